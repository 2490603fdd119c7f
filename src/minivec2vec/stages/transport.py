"""Refine-transport (ours, beyond the paper): annealed Wasserstein-Procrustes on small inputs.

Each iteration computes the entropic optimal transport plan P between the mapped A rows and the
B rows (uniform masses, cost = minus the cosine, temperature eps) by Sinkhorn scaling, then sets
W to the Procrustes solution of the plan-weighted cross-covariance A^T P B. The temperature
falls geometrically from ``EPS_START`` to ``EPS_END``: a warm plan spreads each row over many
targets (its cross-covariance weighs the principal directions of both sides), a cold one pairs
rows with their closest targets, so W is moved from the coarse shape of the clouds to the fine
one instead of being locked onto its first nearest neighbours.

Why it exists: on 1,000 rows per side the nearest-neighbour refinements stop at partial maps
(a rotation of one model, disjoint texts: top-1 0.06-0.62 over 20 seeds) because 1,000 noisy
pairs in 384 dimensions let wrong maps be fixed points; with this stage (the defaults: 200
iterations in each of two restarts) the same 20 seeds reach 0.976-1.000. On large inputs it
was neutral (minilm -> wordllama, 30,904 rows per side: top-1 0.655 with it on 2,000-row
batches, 0.654 without), so the driver runs it only on small inputs (``transport_rows``).
Numbers and the schedules tried are in docs/experiments.md.
"""
from __future__ import annotations

import numpy as np

from ..kernels import numba_kernels as _kernels
from .._runtime.threads import check_kernels_can_run, parallel_region, resolve_n_threads
from ..kernels.procrustes import procrustes

EPS_START = 1.0      # first temperature (cosine units): the plan is nearly uniform
EPS_END = 0.05       # last temperature: each row's plan concentrates on a few targets
                     # (0.01-0.02 ends were measured worse: 0.48-0.99 against 0.53-0.999)
SINKHORN_ITER = 10   # scaling iterations per temperature, warm-started from the previous one


def temperatures(n_iter):
    """The annealing schedule: ``n_iter`` temperatures falling geometrically."""
    return np.geomspace(EPS_START, EPS_END, n_iter)


def transport_bytes(rows_a, rows_b, d_a, d_b):
    """Memory of one iteration on ``rows_a`` x ``rows_b`` rows (kernel, products, samples)."""
    return 4 * (rows_a * rows_b + rows_a * d_b + rows_b * (2 * d_b + 1) + rows_a * d_a) \
        + 8 * (rows_a + rows_b + rows_a * d_b)


def refine_transport(W, X_a, X_b, *, n_iter, sample_size, rng, n_threads=None, on_step=None):
    """Refine-transport. X_a, X_b: centred unit-norm float32 rows; each iteration uses at most
    ``sample_size`` rows per side (all rows of a side that has no more). ``on_step``
    (optional) is called after each iteration. Returns the new W."""
    if n_iter == 0:          # the driver's setting on large inputs: nothing to allocate
        return W
    n_threads = resolve_n_threads(n_threads)
    n_a, n_b = X_a.shape[0], X_b.shape[0]
    size_a, size_b = min(sample_size, n_a), min(sample_size, n_b)
    kernel = np.empty((size_a, size_b), dtype=np.float32)
    u = np.empty(size_a)
    v = np.ones(size_b)
    plan_targets = np.empty((size_a, X_b.shape[1]), dtype=np.float32)
    rows_b = X_b
    rows_b_t = np.ascontiguousarray(X_b.T) if size_b == n_b else None
    check_kernels_can_run()
    for eps in temperatures(n_iter):
        rows_a = X_a if size_a == n_a else X_a[np.sort(rng.choice(n_a, size_a, replace=False))]
        if size_b < n_b:       # a fresh B sample: its scalings start again
            rows_b = X_b[np.sort(rng.choice(n_b, size_b, replace=False))]
            rows_b_t = np.ascontiguousarray(rows_b.T)
            v[:] = 1.0
        with parallel_region(n_threads):
            _kernels.gibbs_kernel(rows_a, W.astype(np.float32), rows_b_t, 1.0 / eps, kernel)
            _kernels.sinkhorn_scaling(kernel, 1.0 / size_a, 1.0 / size_b, SINKHORN_ITER, u, v)
            scaled_b = (rows_b * v[:, None]).astype(np.float32)
            _kernels.rows_product(kernel, scaled_b, plan_targets)
        # A^T diag(u) K diag(v) B: the plan-weighted cross-covariance (d_a x d_b)
        plan_targets *= u[:, None].astype(np.float32)
        M = (rows_a.T @ plan_targets).astype(np.float64)
        W = procrustes(M)
        if on_step is not None:
            on_step()
    return W
