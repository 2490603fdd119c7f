"""Numba kernels. No policy here: callers validate, choose sizes and set thread limits.

Conventions (after scikit-learn's k-means kernels): outputs are preallocated by the caller and
tagged ``# OUT`` / ``# INOUT``; work is split in fixed chunks of ``CHUNK`` rows, so the result
of every kernel is identical whatever the number of threads; BLAS calls inside ``prange`` rely on
the caller holding BLAS to one thread (``_runtime.threads.parallel_region``).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types

# Typed signatures (eager compilation, cached). Read-only variants let memory-mapped or
# read-only inputs run without a recompile or a copy.
f32_2d = types.Array(types.float32, 2, "C")
f32_2d_ro = types.Array(types.float32, 2, "C", readonly=True)
f32_1d = types.Array(types.float32, 1, "C")
f64_1d = types.Array(types.float64, 1, "C")
f64_2d = types.Array(types.float64, 2, "C")
f64_3d = types.Array(types.float64, 3, "C")
i64_1d = types.Array(types.int64, 1, "C")
i64_2d = types.Array(types.int64, 2, "C")

CHUNK = 256          # rows per parallel work item
SMALL_CHUNK = 64     # rows per work item of the kernels whose BLAS products are small: few
                     # centers or candidates (OpenBLAS multiplies 64 rows without packing them),
                     # and the cross-covariance (refine-1's 1,000 rows then fill all 8 slots)
N_SLOTS = 8          # fixed accumulator slots for reductions (independent of the thread count)


# --------------------------------------------------------------------------------------------
# k-means
# --------------------------------------------------------------------------------------------
@numba.njit(
    [types.void(x, f32_1d, f32_2d, f32_1d, i64_1d, f32_1d) for x in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def assign_labels(X,                # IN  (n, d) rows to label
                  row_sqnorms,      # IN  (n,) squared norms of the rows
                  centers,          # IN  (c, d)
                  center_sqnorms,   # IN  (c,)
                  labels,           # OUT (n,)
                  sq_distances):    # OUT (n,) squared distance to the nearest center
    n = X.shape[0]
    c = centers.shape[0]
    # few centers: 64-row products, which OpenBLAS runs without packing the rows (with 256 rows
    # and 20 centers, copying the rows into its panel layout took as long as the products:
    # 10,000 x 384 x 20 in 3.2 -> 1.8 ms). The chunk follows c only, never the thread count.
    rows = SMALL_CHUNK if c <= SMALL_CHUNK else CHUNK
    n_chunks = (n + rows - 1) // rows
    centers_t = np.ascontiguousarray(centers.T)
    for chunk in prange(n_chunks):
        start = chunk * rows
        stop = min(start + rows, n)
        dots = np.dot(X[start:stop], centers_t)
        for i in range(stop - start):
            best = np.inf
            best_j = 0
            for j in range(c):
                v = center_sqnorms[j] - 2.0 * dots[i, j]
                if v < best:
                    best = v
                    best_j = j
            labels[start + i] = best_j
            sq_distances[start + i] = max(row_sqnorms[start + i] + best, 0.0)


@numba.njit(
    [types.void(x, i64_1d, f64_2d, f64_1d) for x in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def cluster_sums(X,         # IN  (n, d)
                 labels,    # IN  (n,)
                 sums,      # OUT (c, d) sum of the rows of each cluster
                 counts):   # OUT (c,)
    n, d = X.shape
    c = sums.shape[0]
    # counting sort of rows by label, then each cluster sums its rows in index order:
    # deterministic whatever the thread count
    starts = np.zeros(c + 1, dtype=np.int64)
    for i in range(n):
        starts[labels[i] + 1] += 1
    for j in range(c):
        starts[j + 1] += starts[j]
    order = np.empty(n, dtype=np.int64)
    fill = starts[:c].copy()
    for i in range(n):
        order[fill[labels[i]]] = i
        fill[labels[i]] += 1
    for j in prange(c):
        counts[j] = starts[j + 1] - starts[j]
        total = np.zeros(d, dtype=np.float64)   # a local accumulator: the loop vectorises
        for p in range(starts[j], starts[j + 1]):
            row = X[order[p]]
            for t in range(d):
                total[t] += row[t]
        sums[j] = total


@numba.njit(
    [types.void(x, i64_1d, f32_2d, f64_1d, f64_2d) for x in (f32_2d, f32_2d_ro)],
    cache=True, nogil=True,
)
def minibatch_step(batch,          # IN    (b, d) rows of this step
                   labels,         # IN    (b,) their nearest centers
                   centers,        # INOUT (c, d)
                   center_counts,  # INOUT (c,) rows absorbed so far (per-center learning rate)
                   sums):          # SCRATCH (c, d) float64
    """One mini-batch center update: each center moves to the running mean of every row it has
    absorbed. Serial on purpose: b x d additions (2048 x 384 = 0.8 M) cost less than waking a
    thread pool, and rows are added in index order, so the result is deterministic."""
    b, d = batch.shape
    c = centers.shape[0]
    batch_counts = np.zeros(c, dtype=np.int64)
    for i in range(b):
        j = labels[i]
        if batch_counts[j] == 0:
            for t in range(d):
                sums[j, t] = 0.0
        batch_counts[j] += 1
        row = batch[i]
        for t in range(d):
            sums[j, t] += row[t]
    for j in range(c):
        m = batch_counts[j]
        if m == 0:
            continue
        total = center_counts[j] + m
        for t in range(d):
            centers[j, t] = (centers[j, t] * center_counts[j] + sums[j, t]) / total
        center_counts[j] = total


@numba.njit(
    [types.void(x, f64_1d, f32_2d, f64_1d, f64_1d, f64_2d, f64_1d) for x in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def seeding_distances(X,             # IN  (n, d) rows
                      row_sq,        # IN  (n,) squared norms of the rows
                      candidates_t,  # IN  (d, t) candidate centers, transposed
                      cand_sq,       # IN  (t,) their squared norms
                      closest,       # IN  (n,) squared distance of each row to its nearest center
                      distances,     # OUT (t, n) squared distance of each row to each candidate
                      potentials):   # OUT (t,) sum_i min(closest_i, distances[t, i])
    """One k-means++ step's work in ONE pass over the rows: the distances of every row to the
    few candidates (a BLAS product per chunk of rows, BLAS held to one thread by the caller)
    and every candidate's potential. The chosen candidate's row of ``distances`` then updates
    ``closest`` with no second pass. Fixed chunks, partial sums added in chunk order: the
    result does not depend on the thread count."""
    n = X.shape[0]
    t = candidates_t.shape[1]
    # 64-row products: OpenBLAS runs them without packing the rows (see assign_labels)
    n_chunks = (n + SMALL_CHUNK - 1) // SMALL_CHUNK
    partial = np.zeros((n_chunks, t), dtype=np.float64)
    for chunk in prange(n_chunks):
        start = chunk * SMALL_CHUNK
        stop = min(start + SMALL_CHUNK, n)
        dots = np.dot(X[start:stop], candidates_t)
        for i in range(stop - start):
            row = start + i
            for c in range(t):
                dist = max(row_sq[row] + cand_sq[c] - 2.0 * dots[i, c], 0.0)
                distances[c, row] = dist
                partial[chunk, c] += min(dist, closest[row])
    for c in range(t):
        total = 0.0
        for chunk in range(n_chunks):
            total += partial[chunk, c]
        potentials[c] = total


# --------------------------------------------------------------------------------------------
# streaming cross-covariance for Procrustes
# --------------------------------------------------------------------------------------------
@numba.njit(
    [types.void(x, y, i64_2d, f64_3d) for x in (f32_2d, f32_2d_ro) for y in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def accumulate_neighbour_crosscov(X,          # IN  (n, d_a) sources
                                  Y,          # IN  (m, d_b) targets
                                  neighbours, # IN  (n, k) indices into Y
                                  slots):     # INOUT (N_SLOTS, d_a, d_b) partial sums
    """slots += sum_i x_i^T mean_j Y[neighbours[i, j]], without materialising the targets.

    Chunk ``q`` always goes to slot ``q % N_SLOTS`` and each slot adds its chunks in order,
    so the sum of the slots is bit-identical whatever the thread count.
    """
    n, d_a = X.shape
    d_b = Y.shape[1]
    k = neighbours.shape[1]
    n_slots = slots.shape[0]
    n_chunks = (n + SMALL_CHUNK - 1) // SMALL_CHUNK
    inv_k = np.float32(1.0 / k)
    for slot in prange(n_slots):
        gathered = np.empty((SMALL_CHUNK, d_b), dtype=np.float32)
        for chunk in range(slot, n_chunks, n_slots):
            start = chunk * SMALL_CHUNK
            stop = min(start + SMALL_CHUNK, n)
            rows = stop - start
            for i in range(rows):
                for t in range(d_b):
                    gathered[i, t] = 0.0
                for j in range(k):
                    y = Y[neighbours[start + i, j]]
                    for t in range(d_b):
                        gathered[i, t] += y[t]
                for t in range(d_b):
                    gathered[i, t] *= inv_k
            part = np.dot(np.ascontiguousarray(X[start:stop].T), gathered[:rows])
            for a in range(d_a):
                for b in range(d_b):
                    slots[slot, a, b] += part[a, b]


# --------------------------------------------------------------------------------------------
# entropic optimal transport (refine-transport)
# --------------------------------------------------------------------------------------------
@numba.njit(
    [types.void(x, f32_2d, f32_2d, types.float64, f32_2d) for x in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def gibbs_kernel(X,          # IN  (n, d_a) source rows
                 W,          # IN  (d_a, d_b) current map
                 Y_t,        # IN  (d_b, m) target rows, transposed
                 inv_eps,    # IN  1 / temperature
                 K):         # OUT (n, m) exp((s_ij - max_j s_ij) / eps), s = (X W) Y^T
    """The Gibbs kernel of the similarities, each row shifted by its maximum so that every
    entry lies in (0, 1] (the shift is a row scaling, which Sinkhorn absorbs)."""
    n = X.shape[0]
    m = Y_t.shape[1]
    n_chunks = (n + CHUNK - 1) // CHUNK
    scale = np.float32(inv_eps)
    for chunk in prange(n_chunks):
        start = chunk * CHUNK
        stop = min(start + CHUNK, n)
        sims = np.dot(np.dot(X[start:stop], W), Y_t)
        for i in range(stop - start):
            top = sims[i, 0]
            for j in range(1, m):
                if sims[i, j] > top:
                    top = sims[i, j]
            for j in range(m):
                K[start + i, j] = np.exp((sims[i, j] - top) * scale)


@numba.njit(
    types.void(f32_2d, types.float64, types.float64, types.int64, f64_1d, f64_1d),
    parallel=True, cache=True, nogil=True,
)
def sinkhorn_scaling(K,          # IN    (n, m) Gibbs kernel
                     row_mass,   # IN    mass of each row (1 / n)
                     col_mass,   # IN    mass of each column (1 / m)
                     n_iter,     # IN    scaling iterations
                     u,          # OUT   (n,) row scalings
                     v):         # INOUT (m,) column scalings (the caller's warm start)
    """Sinkhorn-Knopp: diag(u) K diag(v) with row sums ``row_mass`` and column sums
    ``col_mass``. Each row sum is one thread's loop and each column block's sums run over the
    rows in order, so the result does not depend on the thread count."""
    n, m = K.shape
    n_col_chunks = (m + CHUNK - 1) // CHUNK
    for _ in range(n_iter):
        for i in prange(n):
            total = 0.0
            for j in range(m):
                total += K[i, j] * v[j]
            u[i] = row_mass / total
        for chunk in prange(n_col_chunks):
            start = chunk * CHUNK
            stop = min(start + CHUNK, m)
            sums = np.zeros(stop - start)
            for i in range(n):
                ui = u[i]
                for j in range(start, stop):
                    sums[j - start] += K[i, j] * ui
            for j in range(start, stop):
                v[j] = col_mass / sums[j - start]


@numba.njit(
    [types.void(f32_2d, y, f32_2d) for y in (f32_2d, f32_2d_ro)],
    parallel=True, cache=True, nogil=True,
)
def rows_product(K,      # IN  (n, m)
                 Y,      # IN  (m, d)
                 out):   # OUT (n, d) = K @ Y, in fixed row chunks
    n = K.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):
        start = chunk * CHUNK
        stop = min(start + CHUNK, n)
        out[start:stop] = np.dot(K[start:stop], Y)


# --------------------------------------------------------------------------------------------
# quadratic assignment (anchor matching): 2-opt local search
# --------------------------------------------------------------------------------------------
@numba.njit(types.float64(f64_2d, f64_2d, i64_1d), cache=True, nogil=True)
def qap_objective(A, B, perm):
    """trace(A P B P^T) = sum_ij A[i, j] B[perm[i], perm[j]]."""
    c = A.shape[0]
    total = 0.0
    for i in range(c):
        for j in range(c):
            total += A[i, j] * B[perm[i], perm[j]]
    return total


@numba.njit(types.float64(f64_2d, f64_2d, i64_1d), cache=True, nogil=True)
def qap_2opt(A,      # IN  (c, c) symmetric
             B,      # IN  (c, c) symmetric
             perm):  # INOUT (c,) start permutation, returned as a 2-opt local optimum
    """Best-improvement pair swaps until none improves; returns the objective."""
    c = A.shape[0]
    while True:
        best_delta = 1e-12
        best_r = -1
        best_s = -1
        for r in range(c):
            pr = perm[r]
            for s in range(r + 1, c):
                ps = perm[s]
                delta = (A[r, r] - A[s, s]) * (B[ps, ps] - B[pr, pr])
                acc = 0.0
                for j in range(c):
                    if j != r and j != s:
                        pj = perm[j]
                        acc += (A[r, j] - A[s, j]) * (B[ps, pj] - B[pr, pj])
                delta += 2.0 * acc
                if delta > best_delta:
                    best_delta = delta
                    best_r = r
                    best_s = s
        if best_r < 0:
            break
        tmp = perm[best_r]
        perm[best_r] = perm[best_s]
        perm[best_s] = tmp
    return qap_objective(A, B, perm)
