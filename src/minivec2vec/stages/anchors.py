"""Stage 1: anchor matching.

Each run draws a sample per side, clusters both, and matches the clusters by solving the
quadratic assignment max_P trace(K_a P K_b P^T) on the double-centred Gram matrices
K = H C C^T H of the centroids (maximising linear CKA over permutations), by 2-opt from many
random starts. The matched centroids of all runs are the anchor pairs.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..kernels import numba_kernels as _kernels
from .._runtime.threads import single_threaded_blas
from ..kernels.kmeans import kmeans


@dataclass
class Anchors:
    anchors_a: np.ndarray    # (n_runs * n_clusters, d_a) matched centroids of side A
    anchors_b: np.ndarray    # (n_runs * n_clusters, d_b) their partners in side B
    run_scores: np.ndarray   # (n_runs,) linear CKA of each run's best matching, in [0, 1]


def centred_gram(centroids):
    """H C C^T H with H = I - 11^T / c (float64)."""
    C = np.asarray(centroids, dtype=np.float64)
    C = C - C.mean(axis=0)
    return np.ascontiguousarray(C @ C.T)


def solve_qap(K_a, K_b, n_restarts, rng):
    """Best 2-opt local optimum of max_P trace(K_a P K_b P^T) over ``n_restarts`` random starts.

    Returns (perm, score) with cluster i of A matched to cluster perm[i] of B and score the
    linear CKA of the matching.
    """
    c = K_a.shape[0]
    best_perm, best_value = None, -np.inf
    for _ in range(n_restarts):
        perm = rng.permutation(c).astype(np.int64)
        value = _kernels.qap_2opt(K_a, K_b, perm)
        if value > best_value:
            best_perm, best_value = perm.copy(), value
    norm = np.linalg.norm(K_a) * np.linalg.norm(K_b)
    return best_perm, (best_value / norm if norm > 0 else 0.0)


def anchor_run(X_a, X_b, *, n_clusters, sample_size, qap_restarts, seed):
    """One run: sample, cluster both sides (Lloyd), match the clusters. Single-threaded."""
    rng = np.random.default_rng(seed)
    centroids = []
    for X in (X_a, X_b):
        rows = X if sample_size >= X.shape[0] else X[np.sort(
            rng.choice(X.shape[0], sample_size, replace=False))]
        # k-means++ on 6144 of the sampled rows, then Lloyd (no mini-batch steps)
        c, _, _ = kmeans(rows, n_clusters, random_state=rng, max_iter=0, lloyd_passes=20,
                         init_size=6144, n_threads=1)
        centroids.append(c)
    perm, score = solve_qap(centred_gram(centroids[0]), centred_gram(centroids[1]),
                            qap_restarts, rng)
    return centroids[0], centroids[1][perm], score


def match_anchors(X_a, X_b, *, n_runs, n_clusters, sample_size, qap_restarts, rng,
                  n_threads=1, on_step=None):
    """Run the anchor stage on normalised, centred float32 inputs; see the module docstring.

    The runs are independent, so they run side by side on ``n_threads`` worker threads (each
    single-threaded: small clusterings gain nothing from finer parallelism). Every run draws
    its own seed from ``rng`` up front, so the result does not depend on scheduling.
    ``on_step`` (optional) is called, on the calling thread, as each run's result arrives.
    """
    seeds = rng.integers(0, 2**63 - 1, size=n_runs)

    def run(seed):
        return anchor_run(X_a, X_b, n_clusters=n_clusters, sample_size=sample_size,
                          qap_restarts=qap_restarts, seed=int(seed))

    # BLAS held to one thread for the whole stage, around the workers: threadpoolctl's limits
    # are process-wide, so per-run limits entered and left by concurrent workers would let one
    # worker restore two BLAS threads under the other's kernels (oversubscribed, serialised)
    with single_threaded_blas():
        with ThreadPoolExecutor(max_workers=max(1, min(n_threads, n_runs))) as pool:
            results = []
            for result in (pool.map(run, seeds) if n_threads > 1 else map(run, seeds)):
                results.append(result)
                if on_step is not None:
                    on_step()
    return Anchors(np.concatenate([r[0] for r in results]),
                   np.concatenate([r[1] for r in results]),
                   np.asarray([r[2] for r in results]))
