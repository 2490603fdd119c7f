"""The partial states of the method (minivec2vec.kernels.partials): merged over any split of the rows
they equal the whole-data results (numpy means, scipy Procrustes, knn), in any merge order."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from minivec2vec import (ProcrustesPartial, finalize_procrustes, knn, merge_procrustes_partials,
                         merge_topk, partial_means, procrustes_partial, topk_partial)
from minivec2vec.kernels.rows import column_mean
from knn_oracle import brute_force, integer_data


def _split_points(rng, n, parts):
    return np.sort(rng.choice(np.arange(1, n), size=parts - 1, replace=False))


def test_one_sided_partials_merge_to_the_column_means(rng, minilm):
    X = minilm[:3000]
    blocks = np.split(X, _split_points(rng, len(X), 5))
    merged = functools.reduce(merge_procrustes_partials, [procrustes_partial(b) for b in blocks])
    assert merged.count == 3000 and not merged.paired
    mean_x, mean_y = partial_means(merged)
    assert mean_y is None
    np.testing.assert_allclose(mean_x, X.astype(np.float64).mean(axis=0), rtol=0, atol=1e-12)
    # column_mean is the same partial on the whole array: one implementation of the mean
    np.testing.assert_array_equal(column_mean(X), partial_means(procrustes_partial(X))[0])


def test_paired_partials_merge_to_the_centred_procrustes(rng):
    n, d_a, d_b = 2500, 12, 7
    X = rng.standard_normal((n, d_a)) + 3.0
    R = np.linalg.qr(rng.standard_normal((d_b, d_b)))[0]
    Y = X[:, :d_b] @ R + 0.1 * rng.standard_normal((n, d_b)) - 5.0
    cuts = _split_points(rng, n, 4)
    parts = [procrustes_partial(x, y) for x, y in zip(np.split(X, cuts), np.split(Y, cuts))]
    forward = functools.reduce(merge_procrustes_partials, parts)
    backward = functools.reduce(merge_procrustes_partials, parts[::-1])
    whole = procrustes_partial(X, Y)
    for merged in (forward, backward):
        assert merged.count == n
        np.testing.assert_allclose(merged.cross_covariance, X.T @ Y, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(merged.sum_y, Y.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(finalize_procrustes(merged), finalize_procrustes(whole),
                                   rtol=0, atol=1e-10)
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    # scipy's orthogonal_procrustes needs equal widths: compare on the square case
    W = finalize_procrustes(procrustes_partial(Xc[:, :d_b], Yc))
    ref, _ = orthogonal_procrustes(Xc[:, :d_b], Yc)
    np.testing.assert_allclose(W, ref, rtol=0, atol=1e-10)
    # centre=False is the plain Procrustes of X^T Y (here far from the centred one)
    W_raw = finalize_procrustes(whole, centre=False)
    ref_raw, _ = orthogonal_procrustes(X[:, :d_b], Y)
    np.testing.assert_allclose(finalize_procrustes(procrustes_partial(X[:, :d_b], Y), centre=False),
                               ref_raw, rtol=0, atol=1e-10)
    assert np.abs(W_raw - finalize_procrustes(whole)).max() > 1e-3


def test_partials_reject_mismatches(rng):
    X = rng.standard_normal((10, 4))
    with pytest.raises(ValueError, match="paired"):
        procrustes_partial(X, X[:9])
    with pytest.raises(ValueError, match="different data"):
        merge_procrustes_partials(procrustes_partial(X), procrustes_partial(X, X))
    with pytest.raises(ValueError, match="different data"):
        merge_procrustes_partials(procrustes_partial(X), procrustes_partial(X[:, :3]))
    with pytest.raises(ValueError, match="no cross-covariance"):
        finalize_procrustes(procrustes_partial(X))
    with pytest.raises(ValueError, match="no rows"):
        partial_means(ProcrustesPartial(sum_x=np.zeros(4), count=0))
    with pytest.raises(ValueError, match="2-D"):
        procrustes_partial(np.zeros(4))


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_topk_partials_merge_to_the_exact_knn(rng, metric):
    """Integer data (exact ties across blocks), blocks smaller than k (padded lists)."""
    Q = integer_data(rng, 50, 5)
    D = integer_data(rng, 600, 5)
    k = 15
    cuts = [4, 10, 250, 251, 400]          # blocks of 4, 6, 240, 1, 149 and 200 rows
    scores = indices = None
    for start, block in zip([0] + cuts, np.split(D, cuts)):
        s, i = topk_partial(Q, block, k, offset=start, metric=metric)
        assert s.shape == i.shape == (50, k)
        if len(block) < k:
            assert np.all(i[:, len(block):] == -1) and np.all(np.isneginf(s[:, len(block):]))
        scores, indices = (s, i) if scores is None else merge_topk(scores, indices, s, i)
    ref_scores, ref_indices = knn(Q, D, k, metric=metric)
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(scores, ref_scores)
    if metric == "ip":  # exact arithmetic: the oracle's ties (lower index first) bit for bit
        oracle_scores, oracle_indices, _ = brute_force(Q, D, k, metric)
        np.testing.assert_array_equal(indices, oracle_indices)
        np.testing.assert_array_equal(scores, oracle_scores.astype(np.float32))
