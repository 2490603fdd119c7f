"""evaluate: hand-computed ranks, CSLS against a hub, the pool, and a dense numpy oracle."""
from __future__ import annotations

import numpy as np
import pytest

from minivec2vec import evaluate


def dense_oracle(mapped, targets, csls=False, k=10):
    """Ranks by the full similarity matrix in float64 (ties counted in the item's favour)."""
    Q = np.asarray(mapped, dtype=np.float64)
    T = np.asarray(targets, dtype=np.float64)
    Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    T = T / np.linalg.norm(T, axis=1, keepdims=True)
    S = Q @ T.T
    if csls:
        r_target = np.sort(S, axis=0)[::-1][:k].mean(axis=0)    # each target's k best queries
        S = 2 * S - r_target[None, :]
    own = np.diag(S)
    ranks = 1 + (S > own[:, None]).sum(axis=1)
    return ranks, float(np.mean(np.sum(Q * T, axis=1)))


# 4 x 2 example. Targets: the four unit axes. Cosines of each mapped row with its own target:
#   row 0 [1, 0]   vs T0 [1, 0]:  1      -> nothing scores higher           -> rank 1
#   row 1 [1, .5]  vs T1 [0, 1]:  .4472  -> T0 (.8944) higher               -> rank 2
#   row 2 [0, 1]   vs T2 [-1, 0]: 0      -> T1 (1) higher, T0 ties (0)      -> rank 2
#   row 3 [0, 1]   vs T3 [0, -1]: -1     -> T0 (0), T1 (1), T2 (0) higher   -> rank 4
TARGETS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
MAPPED = np.array([[1, 0], [1, 0.5], [0, 1], [0, 1]], dtype=np.float32)


def test_hand_made_example():
    result = evaluate(MAPPED, TARGETS)
    assert result["top1"] == 0.25
    assert result["mean_rank"] == pytest.approx((1 + 2 + 2 + 4) / 4)
    assert result["mean_cos"] == pytest.approx((1 + 0.5 / np.sqrt(1.25) + 0 - 1) / 4, abs=1e-6)
    assert result["pool"] == 4
    assert result["metric"] == "cosine"


def test_hand_made_example_is_scale_invariant():
    scales = np.array([[3.0], [0.1], [7.0], [2.0]], dtype=np.float32)
    a = evaluate(MAPPED, TARGETS)
    b = evaluate(MAPPED * scales, TARGETS * scales[::-1])
    assert a["top1"] == b["top1"] and a["mean_rank"] == b["mean_rank"]
    assert a["mean_cos"] == pytest.approx(b["mean_cos"], abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_identical_inputs_are_perfect(rng, dtype):
    X = rng.standard_normal((300, 16)).astype(dtype)
    result = evaluate(X, X)
    assert result["top1"] == 1.0
    assert result["mean_rank"] == 1.0
    assert result["mean_cos"] == pytest.approx(1.0, abs=1e-5)


def test_csls_demotes_a_hub():
    """Target 0 is a hub: it is the nearest target of mapped rows 1 and 2, whose true partners
    are targets 1 and 2. CSLS subtracts each target's mean similarity to its k nearest mapped
    rows, which is largest for the hub, and restores the true partners."""
    def unit(v):
        v = np.asarray(v, dtype=np.float64)
        return v / np.linalg.norm(v)

    targets = np.array([[1, 0, 0], [0.8, 0.6, 0], [0.8, -0.6, 0], [0, 0, 1]], dtype=np.float32)
    mapped = np.array([[1, 0, 0], unit([0.95, 0.31, 0]), unit([0.95, -0.31, 0]), [0, 0, 1]],
                      dtype=np.float32)
    plain = evaluate(mapped, targets)
    assert plain["top1"] == 0.5 and plain["mean_rank"] == 1.5      # ranks 1, 2, 2, 1
    csls = evaluate(mapped, targets, csls=True, csls_k=2)
    assert csls["top1"] == 1.0 and csls["mean_rank"] == 1.0
    assert csls["metric"] == "csls"
    assert csls["mean_cos"] == plain["mean_cos"]                  # cosine of true pairs
    ranks, _ = dense_oracle(mapped, targets, csls=True, k=2)
    np.testing.assert_array_equal(ranks, [1, 1, 1, 1])


@pytest.mark.parametrize("csls", [False, True])
def test_random_data_matches_dense_oracle(rng, csls):
    """2500 noisy pairs (three blocks of 1024 queries) against the float64 dense oracle."""
    T = rng.standard_normal((2500, 24)).astype(np.float32)
    M = T + 1.3 * rng.standard_normal((2500, 24)).astype(np.float32)
    result = evaluate(M, T, pool=None, csls=csls, csls_k=7)
    ranks, mean_cos = dense_oracle(M, T, csls=csls, k=7)
    assert 0.05 < result["top1"] < 0.95                   # a non-trivial case
    # float32 vs float64 may flip the rare near-tie
    assert result["top1"] == pytest.approx(np.mean(ranks == 1), abs=2e-3)
    assert result["mean_rank"] == pytest.approx(ranks.mean(), rel=1e-3)
    assert result["mean_cos"] == pytest.approx(mean_cos, abs=1e-5)
    assert result["pool"] == 2500


def test_pool_uses_the_first_rows(rng):
    T = rng.standard_normal((50, 8)).astype(np.float32)
    M = T + 0.8 * rng.standard_normal((50, 8)).astype(np.float32)
    first = evaluate(M, T, pool=20)
    assert first["pool"] == 20
    assert first == {**evaluate(M[:20], T[:20], pool=None), "pool": 20}
    # rows after the pool play no part
    M2 = M.copy()
    M2[20:] = rng.standard_normal((30, 8))
    assert evaluate(M2, T, pool=20) == first
    # the LAST rows give a different answer (so the test can tell)
    assert evaluate(M[30:], T[30:], pool=None) != first
    # pool larger than n or None: every row
    assert evaluate(M, T, pool=1000)["pool"] == 50
    assert evaluate(M, T, pool=None) == evaluate(M, T, pool=50)


def test_mismatched_rows_raise(rng):
    X = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="rows must be paired"):
        evaluate(X, X[:9])


def test_mismatched_features_raise(rng):
    X = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="targets: has 3 features, expected 4"):
        evaluate(X, X[:, :3])


@pytest.mark.parametrize("pool,exc", [(0, ValueError), (-5, ValueError), (2.5, TypeError)])
def test_bad_pool_raises(rng, pool, exc):
    X = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(exc, match="pool"):
        evaluate(X, X, pool=pool)
