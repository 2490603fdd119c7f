"""Initialisations of W that do not depend on matching k-means partitions.

Similarity-profile initialisation (the idea of VecMap's unsupervised mode, Artetxe et al. 2018,
re-derived here): describe every row of a sample by the SORTED vector of its (square-root
kernel) similarities to the other rows of its own sample. Sorting discards which row is which,
so the descriptor does not change under any rotation of the space and two samples of the same
distribution of texts give comparable descriptors even when the models differ. Rows are matched
across the spaces by CSLS nearest neighbours of these descriptors, Procrustes on the matches
gives a first W, and a few rounds of self-learning with stochastic dictionary induction (keep
each similarity with probability p, p doubling from ``keep_start`` to 1) climb from there.
"""
from __future__ import annotations

import numpy as np

from .procrustes import procrustes


def similarity_profiles(X):
    """Sorted square-root-kernel similarity profile of every row of X (n x n, float32).

    X: unit-norm rows. The kernel is U S U^T for the thin SVD X = U S V^T (the matrix square
    root of X X^T), which flattens the dominant directions; each row is sorted descending,
    then the profiles are L2-normalised, centred per column and L2-normalised again.
    """
    U, s, _ = np.linalg.svd(np.asarray(X, dtype=np.float64), full_matrices=False)
    kernel = (U * s) @ U.T
    profiles = -np.sort(-kernel, axis=1)
    profiles = _unit_rows(profiles)
    profiles -= profiles.mean(axis=0)
    return _unit_rows(profiles).astype(np.float32)


def _unit_rows(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def _csls_dictionary(similarity, csls_k):
    """Union of forward and backward CSLS nearest neighbours of a dense similarity matrix.

    Returns (rows_a, rows_b) index arrays of the matched pairs.
    """
    k_row = min(csls_k, similarity.shape[1])
    k_col = min(csls_k, similarity.shape[0])
    r_a = np.mean(-np.partition(-similarity, k_row - 1, axis=1)[:, :k_row], axis=1)
    r_b = np.mean(-np.partition(-similarity, k_col - 1, axis=0)[:k_col, :], axis=0)
    csls = 2.0 * similarity - r_a[:, None] - r_b[None, :]
    forward = np.argmax(csls, axis=1)
    backward = np.argmax(csls, axis=0)
    rows_a = np.concatenate([np.arange(similarity.shape[0]), backward])
    rows_b = np.concatenate([forward, np.arange(similarity.shape[1])])
    return rows_a, rows_b


def _pairs_procrustes(X_a, X_b, rows_a, rows_b):
    return procrustes(X_a[rows_a].astype(np.float64).T @ X_b[rows_b].astype(np.float64))


def profile_initialisation(X_a, X_b, *, sample_size, csls_k, rng, self_learning_iter=4,
                           keep_start=0.1):
    """W from similarity profiles plus stochastic self-learning on one sample per side.

    X_a, X_b: centred unit-norm float32 rows. ``self_learning_iter`` rounds are run at each
    keep probability keep_start, 2 keep_start, ... , 1. Returns (W, rows_a, rows_b): the
    (semi-)orthogonal W and the sample rows it was learnt on (for scoring).
    """
    n = min(sample_size, X_a.shape[0], X_b.shape[0])
    rows_a = X_a[np.sort(rng.choice(X_a.shape[0], n, replace=False))]
    rows_b = X_b[np.sort(rng.choice(X_b.shape[0], n, replace=False))]
    similarity = similarity_profiles(rows_a) @ similarity_profiles(rows_b).T
    W = _pairs_procrustes(rows_a, rows_b, *_csls_dictionary(similarity, csls_k))
    keep = keep_start
    while True:
        for _ in range(self_learning_iter):
            similarity = (rows_a @ W.astype(np.float32)) @ rows_b.T
            if keep < 1.0:
                similarity *= rng.random(similarity.shape, dtype=np.float32) < keep
            W = _pairs_procrustes(rows_a, rows_b, *_csls_dictionary(similarity, csls_k))
        if keep >= 1.0:
            break
        keep = min(1.0, 2.0 * keep)
    return W, rows_a, rows_b


def sinkhorn(log_kernel, n_iter=100):
    """Entropic transport plan with uniform marginals from log K (n x m), log-domain scaling.

    Returns the plan T (n x m, rows sum to 1/n, columns to 1/m) in float64.
    """
    n, m = log_kernel.shape
    log_p, log_q = -np.log(n), -np.log(m)
    g = np.zeros(m)
    for _ in range(n_iter):
        f = log_p - _logsumexp(log_kernel + g[None, :], axis=1)
        g = log_q - _logsumexp(log_kernel + f[:, None], axis=0)
    return np.exp(log_kernel + f[:, None] + g[None, :])


def _logsumexp(X, axis):
    top = X.max(axis=axis)
    return top + np.log(np.exp(X - np.expand_dims(top, axis)).sum(axis=axis))


def gromov_wasserstein(X_a, X_b, *, rng, n_iter=30, epsilon=0.05, sinkhorn_iter=50,
                       start_noise=1.0):
    """Entropic Gromov-Wasserstein coupling of two samples with inner-product kernels.

    With K = X X^T the square-loss GW objective is, up to terms the marginals fix, the
    maximisation of ||X_a^T T X_b||_F^2 over couplings T: each step linearises it
    (cost -X_a M X_b^T with M = X_a^T T X_b, never an n x n kernel product) and solves the
    entropic transport. The uniform coupling is a saddle point, so the start is a random
    plan (``start_noise``) drawn from ``rng``. ``epsilon`` is relative to the cost's std.
    Returns (M, objective) with objective = ||M||_F^2 scaled to be size-free.
    """
    A = np.asarray(X_a, dtype=np.float64)
    B = np.asarray(X_b, dtype=np.float64)
    T = sinkhorn(start_noise * rng.standard_normal((A.shape[0], B.shape[0])), sinkhorn_iter)
    for _ in range(n_iter):
        M = A.T @ T @ B
        gain = A @ M @ B.T
        gain /= max(gain.std(), 1e-30)
        T = sinkhorn(gain / epsilon, sinkhorn_iter)
    M = A.T @ T @ B
    return M, float(np.sum(M * M))
