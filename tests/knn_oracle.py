"""The exact kNN oracle shared by the kNN, partial-state and Dask tests: numpy's stable
argsort of the full float64 similarity matrix, and integer data whose ties are exact."""
from __future__ import annotations

import numpy as np

def similarity(Q, D, metric):
    """The full similarity matrix in float64 (cosine: zero rows score 0)."""
    Q = np.asarray(Q, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    if metric == "cosine":
        qn = np.linalg.norm(Q, axis=1, keepdims=True)
        dn = np.linalg.norm(D, axis=1, keepdims=True)
        Q = Q / np.where(qn == 0, 1.0, qn)
        D = D / np.where(dn == 0, 1.0, dn)
    return Q @ D.T


def brute_force(Q, D, k, metric):
    """Exact top-k: best score first, equal scores by lower index (stable argsort)."""
    S = similarity(Q, D, metric)
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, order, axis=1), order, S


def assert_matches_brute_force(scores, indices, Q, D, k, metric, atol, max_differ=0.01):
    """Scores equal the exact ones to ``atol``; an index may differ from the oracle's only
    where the two candidates' exact scores are within ``atol`` (a float32 near-tie)."""
    ref_scores, ref_indices, S = brute_force(Q, D, k, metric)
    assert scores.shape == indices.shape == (Q.shape[0], k)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert indices.min() >= 0 and indices.max() < D.shape[0]
    for row in indices:
        assert len(np.unique(row)) == k, "an index appears twice in one row"
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=atol)
    # the reported score belongs to the reported index
    np.testing.assert_allclose(scores, np.take_along_axis(S, indices, axis=1), rtol=0, atol=atol)
    differ = indices != ref_indices
    gap = np.abs(np.take_along_axis(S, indices, axis=1) - np.take_along_axis(S, ref_indices, axis=1))
    assert np.all(gap[differ] <= atol), "an index differs from brute force outside a near-tie"
    # near-ties are rare on continuous data: almost every index agrees exactly
    assert differ.mean() <= max_differ


def integer_data(rng, n, d, low=-2, high=3):
    """Small integers as floats: every dot product is exact in float32, so ties are exact."""
    return rng.integers(low, high, size=(n, d)).astype(np.float32)
