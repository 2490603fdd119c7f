"""Mini-batch k-means with greedy k-means++ initialisation (Numba kernels, seeded, thread-invariant).

The algorithm: greedy k-means++ on a sample of ``init_size`` rows; ``max_iter`` mini-batch steps
of ``batch_size`` rows with per-center learning rates (1 / rows absorbed so far); then
``lloyd_passes`` full Lloyd passes, each one assignment over all rows plus a mean update; last,
one assignment over all rows for the labels and the inertia. Empty clusters are re-seeded at the
rows farthest from their centers.
"""
from __future__ import annotations

import numpy as np

from . import numba_kernels as _kernels, knn
from ..exceptions import ShapeError, TooFewRowsError
from .._runtime.threads import (check_kernels_can_run, numba_threads, parallel_region,
                                resolve_n_threads)
from .._runtime.validation import check_embeddings, check_positive_int, check_random_state


# Below this many multiply-adds per assignment pass, one thread is faster than a parallel region
# (anchor-size clusterings: 2000 x 20 x 384 took 0.5 s on 1 thread, 1.1-1.6 s on 2 under load).
_SMALL_WORK = 50_000_000
# A parallel region whose own work is below this many multiply-adds runs on one thread, whatever
# n_threads says (the kernels split work in fixed chunks, so the results are identical). Each
# region waits for its slowest thread: on a shared machine a waiting OpenMP thread spins while
# the thread it waits for is descheduled. Measured on a 2-core Zen 4 at load 8 (2026-12-05):
# one greedy k-means++ step (12,288 rows x 8 candidates x 384 = 38 M) took 2.1 ms on one thread
# and 32 ms on two, and its 500 steps were half of a 60,000 x 500 clustering's 25-29 s (16 s
# with the steps on one thread). A 4096-row mini-batch labelling (0.8 G) and a full pass stay
# parallel. Idle, a two-thread region saves at most ~half of a few ms per step. The bound was
# 200 M until 2026-12-06; at 100 M the 184 M steps of k-means++ on 60,000 rows (8 candidates,
# 384 features) run on two threads: idle, that seeding took 3.0 s instead of 5.8 s, and Lloyd on
# 60,000 x 500 from it 7.3 s instead of 10.0 s.
_REGION_WORK = 100_000_000
# From this many centers on, rows are labelled by the exact int8 kNN (k = 1 with the row bias
# -|c|^2 / 2, where the CPU has VNNI or AVX2): 60,000 x 500 x 384 takes 0.10 s instead of 0.16 s
# with the BLAS kernel (AVX2 kernel: 0.26 s, 64 centers 0.09 s, against 3.8 / 3.0 s for the
# Numba pass on a loaded 2-core machine). Fewer centers leave most of its 64-row panels empty
# (20 centers: 4x slower).
_KNN_MIN_CLUSTERS = 64


# The defaults (2026-12-06): scikit-learn's MiniBatchKMeans does ~0.27 M row labellings on
# 60,000 x 500 (about 300 steps of 1,024 rows, then the final pass); 20 steps of 4,096 rows
# seeded on 3,072 rows reach a lower inertia with ~0.14 M (see the docstring's figures).
DEFAULT_INIT_ROWS = 3072     # k-means++ sample by default (scikit-learn's: 3 x its 1,024-row batches)
LLOYD_PASSES_IN_ONE_BATCH = 12   # default full passes when X fits in one batch (no mini-batch steps)


def default_lloyd_passes(n, batch_size, max_iter):
    """``lloyd_passes=None``: up to 12 full passes when the mini-batch steps do not run (X fits in
    one batch, or ``max_iter=0``); else as many as label at most half as many rows as the steps
    did (none on 60,000 rows with the defaults, 4 on 10,000), capped at 12."""
    if batch_size >= n or max_iter == 0:
        return LLOYD_PASSES_IN_ONE_BATCH
    return min(LLOYD_PASSES_IN_ONE_BATCH, (max_iter * batch_size) // (2 * n))


def kmeans(X, n_clusters, random_state=None, init=None, batch_size=4096, max_iter=20,
           lloyd_passes=None, init_size=None, tol=1e-4, n_threads=None):
    """Cluster the rows of X.

    Parameters
    ----------
    X : ndarray of shape (n, d), float16/32/64
    n_clusters : int, 1 <= n_clusters <= n
    random_state : int, numpy Generator or None
    init : ndarray of shape (n_clusters, d), optional
        Starting centers (k-means++ when None).
    batch_size : int
        Rows per mini-batch step.
    max_iter : int
        Number of mini-batch steps (0 = none; none either when ``batch_size >= n``).
    lloyd_passes : int, optional
        At most this many full Lloyd passes after the mini-batch steps (0 = none). By default
        (None) up to 12 when no mini-batch step runs, else as many as label at most half as many
        rows as the steps did (:func:`default_lloyd_passes`): none on 60,000 rows, 4 on 10,000.
        For an inertia close to full Lloyd on large inputs pass e.g. ``max_iter=100,
        lloyd_passes=12``: 41,176-41,302 against scikit-learn ``KMeans``'s 41,100 on 60,000 x
        384 minilm rows and 500 clusters (seeds 0-2), at about 5x the time of the defaults.
    tol : float
        Lloyd passes stop once the summed squared center shift is at most ``tol`` times the
        mean per-feature variance of X (scikit-learn's rule), or no label changes.
    init_size : int, optional
        Rows sampled for k-means++ (default: 3,072, scikit-learn's ``MiniBatchKMeans`` default
        sample, or 3 * n_clusters when more; at most n).
    n_threads : int, optional

    The defaults (2026-12-06, 60,000 x 384 minilm rows, 500 clusters, 2 threads, seeds 0-2):
    inertia 42,339-42,448 against 42,655-42,874 for scikit-learn's ``MiniBatchKMeans``
    defaults, in 0.35-0.40 s (AVX-512 VNNI) or 0.58-0.65 s (held to AVX2) against 1.8-3.4 s.

    Returns
    -------
    centroids : ndarray of shape (n_clusters, d), float32
    labels : ndarray of shape (n,), int64
    inertia : float, sum of squared distances of the rows to their centroids
    """
    X = check_embeddings(X, "X")
    n, d = X.shape
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    if n_clusters > n:
        raise TooFewRowsError(f"n_clusters={n_clusters} is larger than the number of rows ({n})")
    batch_size = check_positive_int(batch_size, "batch_size")
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    if lloyd_passes is None:
        lloyd_passes = default_lloyd_passes(n, batch_size, max_iter)
    lloyd_passes = check_positive_int(lloyd_passes, "lloyd_passes", minimum=0)
    rng = check_random_state(random_state)
    n_threads = resolve_n_threads(n_threads)
    if n * n_clusters * d < _SMALL_WORK:
        n_threads = 1  # a parallel region costs more than such work (results are identical)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    row_sq = np.einsum("ij,ij->i", X32, X32)
    # mean per-feature variance = (mean squared norm - squared norm of the mean) / d, from the
    # row norms already at hand and one column-mean pass (np.var makes two passes and a copy)
    shift_tol = 0.0
    if lloyd_passes:
        column_mean = X32.mean(axis=0, dtype=np.float64)
        shift_tol = tol * max(float(row_sq.mean(dtype=np.float64) - column_mean @ column_mean),
                              0.0) / d

    if init is not None:
        centers = check_embeddings(init, "init", n_features=d)
        if centers.shape[0] != n_clusters:
            raise ShapeError(f"init: has {centers.shape[0]} rows, expected n_clusters={n_clusters}")
        centers = np.array(centers, dtype=np.float32, order="C")

    check_kernels_can_run()
    with parallel_region(n_threads):
        if init is None:
            size = init_size or max(DEFAULT_INIT_ROWS, 3 * n_clusters)
            sample = X32 if size >= n else X32[np.sort(rng.choice(n, size, replace=False))]
            trials = _local_trials(n_clusters)
            with numba_threads(_region_threads(sample.shape[0] * trials * d, n_threads)):
                centers = _kmeans_plusplus(sample, n_clusters, rng, trials)

        counts = np.zeros(n_clusters, dtype=np.float64)
        sums = np.empty((n_clusters, d), dtype=np.float64)
        batch_counts = np.empty(n_clusters, dtype=np.float64)
        step_size = min(batch_size, n)
        step_threads = _region_threads(step_size * n_clusters * d, n_threads)
        pass_threads = _region_threads(n * n_clusters * d, n_threads)
        labels = np.empty(step_size, dtype=np.int64)
        sq = np.empty(step_size, dtype=np.float32)
        batch = np.empty((step_size, d), dtype=np.float32)     # reused: no page faults per step
        batch_sq = np.empty(step_size, dtype=np.float32)
        for _ in range(max_iter if batch_size < n else 0):
            rows = np.sort(rng.choice(n, step_size, replace=False))
            np.take(X32, rows, axis=0, out=batch)
            np.take(row_sq, rows, out=batch_sq)
            _assign(batch, batch_sq, centers, labels, sq, step_threads)
            _kernels.minibatch_step(batch, labels, centers, counts, sums)

        labels = np.empty(n, dtype=np.int64)
        sq = np.empty(n, dtype=np.float32)
        _assign(X32, row_sq, centers, labels, sq, pass_threads)
        previous = np.empty_like(labels)
        for _ in range(lloyd_passes):
            with numba_threads(_region_threads(n * d, n_threads)):
                _kernels.cluster_sums(X32, labels, sums, batch_counts)
            before = centers.copy()
            _lloyd_update(centers, sums, batch_counts, X32, sq)
            previous[:] = labels
            _assign(X32, row_sq, centers, labels, sq, pass_threads)
            shift = float(((centers - before) ** 2).sum())
            if np.array_equal(previous, labels) or shift <= shift_tol:
                break  # converged
    return centers, labels, float(sq.astype(np.float64).sum())


def _region_threads(work, n_threads):
    """Threads for one parallel region of ``work`` multiply-adds (see _REGION_WORK)."""
    return n_threads if work >= _REGION_WORK else 1


def _local_trials(n_clusters):
    """Candidates per greedy k-means++ step (scikit-learn's rule)."""
    return 2 + int(np.log(n_clusters))


def _assign(X32, row_sq, centers, labels, sq_distances, n_threads):
    """labels <- nearest center of every row, sq_distances <- its squared distance
    (``n_threads``: the threads of this pass, inside the caller's parallel region)."""
    center_sq = _sqnorms(centers)
    if knn.ENGINE in knn._INT8_ENGINES and centers.shape[0] >= _KNN_MIN_CLUSTERS:
        # argmin |x - c|^2 = argmax x.c - |c|^2 / 2, and |x - c|^2 = |x|^2 - 2 (x.c - |c|^2 / 2)
        scores, nearest = knn._knn(X32, centers, 1, n_threads=n_threads, bias=-0.5 * center_sq)
        labels[:] = nearest[:, 0]
        np.maximum(row_sq - 2.0 * scores[:, 0], 0.0, out=sq_distances)
    else:
        with numba_threads(n_threads):
            _kernels.assign_labels(X32, row_sq, centers, center_sq, labels, sq_distances)


def _sqnorms(centers):
    return np.einsum("ij,ij->i", centers, centers).astype(np.float32)


def _lloyd_update(centers, sums, counts, X32, sq_distances):
    """Centers become the mean of their rows; empty ones move to the farthest rows."""
    filled = counts > 0
    centers[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    empty = np.flatnonzero(~filled)
    if empty.size:
        far = np.argsort(-sq_distances, kind="stable")[:empty.size]
        centers[empty] = X32[far]


def _kmeans_plusplus(X, n_clusters, rng, n_local_trials=None):
    """Greedy k-means++ (Arthur & Vassilvitskii): each step keeps the best of a few candidates.

    Each step is one fused, parallel Numba pass computing the distances of every row to the
    candidates and their potentials; the chosen candidate's distances then update the
    nearest-center distances (see _kernels.seeding_distances).
    """
    n = X.shape[0]
    if n_local_trials is None:
        n_local_trials = _local_trials(n_clusters)
    x_sq = np.einsum("ij,ij->i", X, X).astype(np.float64)
    centers = np.empty((n_clusters, X.shape[1]), dtype=np.float32)
    distances = np.empty((n_local_trials, n), dtype=np.float64)
    potentials = np.empty(n_local_trials, dtype=np.float64)
    first = int(rng.integers(n))
    centers[0] = X[first]
    closest = np.full(n, np.inf)
    _kernels.seeding_distances(X, x_sq, np.ascontiguousarray(X[first:first + 1].T),
                               x_sq[first:first + 1], closest, distances[:1], potentials[:1])
    closest = distances[0].copy()
    potential = float(potentials[0])
    for c in range(1, n_clusters):
        if potential <= 0:
            # fewer distinct rows than clusters: pick remaining centers uniformly
            cand = rng.integers(n, size=n_local_trials)
        else:
            cum = np.cumsum(closest)
            cand = np.searchsorted(cum, rng.random(n_local_trials) * cum[-1])
            cand = np.minimum(cand, n - 1)
        _kernels.seeding_distances(X, x_sq, np.ascontiguousarray(X[cand].T), x_sq[cand], closest,
                                   distances[:cand.size], potentials[:cand.size])
        best = int(np.argmin(potentials[:cand.size]))
        centers[c] = X[cand[best]]
        np.minimum(closest, distances[best], out=closest)
        potential = float(potentials[best])
    return centers
