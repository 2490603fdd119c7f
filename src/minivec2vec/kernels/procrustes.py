"""Orthogonal (semi-orthogonal) Procrustes from a streamed cross-covariance.

W = U V^T where U S V^T is the thin SVD of the d_a x d_b cross-covariance M = X^T Y. With
d_a == d_b W is orthogonal; with d_a > d_b its columns are orthonormal (W^T W = I); with
d_a < d_b its rows are (W W^T = I). Only M is ever needed, so it is accumulated block by block.
"""
from __future__ import annotations

import numpy as np

from . import numba_kernels as _kernels
from ..exceptions import InvalidParameterError, NonFiniteError, ShapeError
from .._runtime.threads import (check_kernels_can_run, parallel_region, resolve_n_threads,
                                single_threaded_blas)


def procrustes(cross_covariance):
    """The (semi-)orthogonal W maximising trace(W^T M) for M = X^T Y."""
    M = np.asarray(cross_covariance, dtype=np.float64)
    if M.ndim != 2:
        raise ShapeError(f"cross_covariance: expected a 2-D matrix, got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise NonFiniteError("cross_covariance: contains NaN or Inf")
    with single_threaded_blas():  # d x d LAPACK: BLAS threads only cost here
        return _polar_factor(M)


def _polar_factor(M):
    # Polar factor through the eigendecomposition of the small Gram matrix (2-3x faster than
    # an SVD at d = 384). Its orthogonality error grows like cond(M)^2 * eps: ~1e-10 up to
    # cond(M) = 1e3; from there to 1e5 (error up to ~1e-6) one Newton-Schulz step
    # X <- X (3 I - X^T X) / 2 squares the error (refine-1's noisy cross-covariances land there
    # in about half of the iterations: the SVD they used to fall back to costs 2x the eigh).
    # Rank-deficient M (cond > 1e5) still goes to the SVD.
    tall = M.shape[0] >= M.shape[1]
    G = M.T @ M if tall else M @ M.T
    eigvals, V = np.linalg.eigh(G)
    if eigvals[-1] > 0 and eigvals[0] > 1e-10 * eigvals[-1]:
        inv_sqrt = (V / np.sqrt(eigvals)) @ V.T
        P = M @ inv_sqrt if tall else inv_sqrt @ M
        if eigvals[0] <= 1e-6 * eigvals[-1]:
            P = 1.5 * P - 0.5 * (P @ (P.T @ P) if tall else (P @ P.T) @ P)
        return P
    U, _, Vt = np.linalg.svd(M, full_matrices=False)
    return U @ Vt


def neighbour_cross_covariance(X, Y, neighbours, n_threads=None):
    """M = sum_i x_i^T mean_j Y[neighbours[i, j]], accumulated in chunks (float64).

    X: (n, d_a) float32, Y: (m, d_b) float32, neighbours: (n, k) int64 indices into Y. The
    gathered targets never exist as an n x d_b array. Thread-count invariant.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    neighbours = np.ascontiguousarray(neighbours, dtype=np.int64)
    if neighbours.shape[0] != X.shape[0]:
        raise ShapeError(f"neighbours: has {neighbours.shape[0]} rows, X has {X.shape[0]}")
    if neighbours.size and (neighbours.min() < 0 or neighbours.max() >= Y.shape[0]):
        raise InvalidParameterError("neighbours: indices out of range of Y")
    slots = np.zeros((_kernels.N_SLOTS, X.shape[1], Y.shape[1]), dtype=np.float64)
    check_kernels_can_run()
    with parallel_region(resolve_n_threads(n_threads)):
        _kernels.accumulate_neighbour_crosscov(X, Y, neighbours, slots)
    return slots.sum(axis=0)


def smoothed_update(W, W_new, alpha, project=True):
    """(1 - alpha) W + alpha W_new, re-projected onto the (semi-)orthogonal matrices by default."""
    W = (1.0 - alpha) * W + alpha * W_new
    return procrustes(W) if project else W   # the nearest (semi-)orthogonal matrix
