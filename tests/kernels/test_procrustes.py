"""procrustes against scipy / numpy SVD; neighbour_cross_covariance against the dense product."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from conftest import assert_semi_orthogonal
from minivec2vec import neighbour_cross_covariance, procrustes


def svd_polar(M):
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def matrix_with_singular_values(rng, shape, singular_values):
    r = min(shape)
    U = np.linalg.qr(rng.standard_normal((shape[0], r)))[0]
    V = np.linalg.qr(rng.standard_normal((shape[1], r)))[0]
    return (U * singular_values) @ V.T


# ------------------------------------------------------------------------------------ procrustes
@pytest.mark.parametrize("d", [1, 2, 17, 64])
def test_square_case_equals_scipy(rng, d):
    X = rng.standard_normal((300, d))
    Y = rng.standard_normal((300, d))
    W = procrustes(X.T @ Y)
    R, _ = orthogonal_procrustes(X, Y)
    np.testing.assert_allclose(W, R, rtol=0, atol=1e-10)
    assert_semi_orthogonal(W)
    assert W.dtype == np.float64


def test_square_case_from_float32_input_equals_scipy(rng):
    X = rng.standard_normal((500, 32)).astype(np.float32)
    Y = rng.standard_normal((500, 32)).astype(np.float32)
    M = X.T @ Y                                     # float32 cross-covariance
    R, _ = orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    W = procrustes(M)
    np.testing.assert_allclose(W, svd_polar(M.astype(np.float64)), rtol=0, atol=1e-10)
    np.testing.assert_allclose(W, R, rtol=0, atol=1e-4)
    assert_semi_orthogonal(W)


def test_recovers_a_known_rotation(rng):
    R = ortho_group.rvs(40, random_state=1)
    X = rng.standard_normal((1000, 40))
    W = procrustes(X.T @ (X @ R))
    np.testing.assert_allclose(W, R, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(30, 12), (12, 30), (384, 256), (256, 384)])
def test_semi_orthogonal_equals_svd(rng, shape):
    X = rng.standard_normal((700, shape[0]))
    Y = rng.standard_normal((700, shape[1]))
    M = X.T @ Y
    W = procrustes(M)
    assert W.shape == shape
    assert_semi_orthogonal(W, atol=1e-10)
    np.testing.assert_allclose(W, svd_polar(M), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(20, 20), (30, 12), (12, 30), (384, 256)])
@pytest.mark.parametrize("condition", [5e3, 9e4])
def test_ill_conditioned_full_rank_stays_semi_orthogonal(rng, shape, condition):
    """Condition numbers 5e3 and 9e4 (a full-rank M with a decaying spectrum, as noisy
    cross-covariances have; both past the plain eigh route's 1e3, the second near the 1e5 end
    of its Newton-Schulz-polished route): W must still be (semi-)orthogonal to 1e-10 and
    equal U V^T (to 1e-10, or 1e-8 near cond 1e5 where the Gram matrix's eigenvectors carry
    cond^2 * eps ~ 1e-6 of error before the polishing step)."""
    M = matrix_with_singular_values(rng, shape, np.geomspace(1.0, 1.0 / condition, min(shape)))
    W = procrustes(M)
    assert_semi_orthogonal(W, atol=1e-10)
    np.testing.assert_allclose(W, svd_polar(M), rtol=0, atol=1e-10 if condition < 1e4 else 1e-8)


@pytest.mark.parametrize("shape", [(20, 20), (30, 12), (12, 30)])
def test_rank_deficient_maximises_the_trace(rng, shape):
    """Rank-deficient M: W is not unique, but it is (semi-)orthogonal and maximises
    trace(W^T M), whose maximum is the nuclear norm of M."""
    r = min(shape) // 2
    M = rng.standard_normal((shape[0], r)) @ rng.standard_normal((r, shape[1]))
    W = procrustes(M)
    assert_semi_orthogonal(W, atol=1e-10)
    nuclear = np.linalg.svd(M, compute_uv=False).sum()
    np.testing.assert_allclose(np.trace(W.T @ M), nuclear, rtol=1e-10)


def test_zero_matrix_gives_a_semi_orthogonal_matrix():
    W = procrustes(np.zeros((5, 3)))
    assert np.all(np.isfinite(W))
    assert_semi_orthogonal(W)


def test_procrustes_bad_input_raises():
    with pytest.raises(ValueError, match="2-D"):
        procrustes(np.ones(4))
    M = np.eye(3)
    M[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        procrustes(M)


# ------------------------------------------------------------------------------------ cross-cov
def dense_cross_covariance(X, Y, neighbours):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return X.T @ Y[neighbours].mean(axis=1)


def assert_close_to_dense(M, ref):
    assert M.dtype == np.float64 and M.shape == ref.shape
    np.testing.assert_allclose(M, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("n,k", [(1, 1), (255, 3), (2345, 7), (5000, 50)])
def test_neighbour_cross_covariance_equals_dense(rng, n, k):
    X = rng.standard_normal((n, 24)).astype(np.float32)
    Y = rng.standard_normal((900, 11)).astype(np.float32)
    neighbours = rng.integers(0, 900, size=(n, k))
    M = neighbour_cross_covariance(X, Y, neighbours)
    assert_close_to_dense(M, dense_cross_covariance(X, Y, neighbours))


def test_neighbour_cross_covariance_on_real_sample(minilm, wordllama):
    X = minilm[:3000].astype(np.float32)
    Y = wordllama[3000:].astype(np.float32)
    rng = np.random.default_rng(0)
    neighbours = rng.integers(0, Y.shape[0], size=(3000, 10))
    M = neighbour_cross_covariance(X, Y, neighbours)
    assert_close_to_dense(M, dense_cross_covariance(X, Y, neighbours))


def test_neighbour_cross_covariance_accepts_other_dtypes(rng):
    X = rng.standard_normal((600, 8))
    Y = rng.standard_normal((50, 5)).astype(np.float16)
    neighbours = rng.integers(0, 50, size=(600, 4)).astype(np.int32)
    M = neighbour_cross_covariance(X, Y, neighbours)
    ref = dense_cross_covariance(X.astype(np.float32), Y, neighbours)
    assert_close_to_dense(M, ref)


@pytest.mark.parametrize("n", [100, 2345, 6000])
def test_neighbour_cross_covariance_thread_invariant(rng, n):
    X = rng.standard_normal((n, 32)).astype(np.float32)
    Y = rng.standard_normal((1000, 20)).astype(np.float32)
    neighbours = rng.integers(0, 1000, size=(n, 9))
    M1 = neighbour_cross_covariance(X, Y, neighbours, n_threads=1)
    M2 = neighbour_cross_covariance(X, Y, neighbours, n_threads=2)
    assert M1.tobytes() == M2.tobytes()


def test_neighbour_cross_covariance_bad_neighbours_raise(rng):
    X = rng.standard_normal((10, 3)).astype(np.float32)
    Y = rng.standard_normal((5, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="neighbours: has 9 rows, X has 10"):
        neighbour_cross_covariance(X, Y, np.zeros((9, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        neighbour_cross_covariance(X, Y, np.full((10, 2), 5))
    with pytest.raises(ValueError, match="out of range"):
        neighbour_cross_covariance(X, Y, np.full((10, 2), -1))


def test_procrustes_of_neighbour_cross_covariance_recovers_rotation(rng):
    """End to end: true partners as the only neighbour recover a rotation exactly."""
    R = ortho_group.rvs(16, random_state=2)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    perm = rng.permutation(3000)
    Y = np.empty_like(X)
    Y[perm] = (X.astype(np.float64) @ R).astype(np.float32)    # Y rows shuffled
    W = procrustes(neighbour_cross_covariance(X, Y, perm[:, None]))
    np.testing.assert_allclose(W, R, atol=1e-5)
