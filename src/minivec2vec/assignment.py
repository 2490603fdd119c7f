"""Refine-assignment (ours, beyond the paper): Wasserstein-Procrustes on random batches, with
exact one-to-one assignments, for large inputs.

Each step draws ``BATCHES_PER_STEP`` pairs of batches of ``sample_size`` rows (one batch per
side, fresh rows every step), solves the linear assignment that pairs every mapped A row of a
batch with a distinct B row of maximum total cosine (scipy's ``linear_sum_assignment``, a
compiled shortest-augmenting-path solver), and averages the batches' cross-covariances of the
assigned pairs into a running cross-covariance M <- momentum M + (1 - momentum) M_step. W is
the Procrustes solution of M.

Why it exists: nearest-neighbour pairings (refine-1, refine-mutual) lean towards the current
map: from a weak start, every row's nearest neighbours crowd onto a few hubs that agree with
it, so a start below agreement ~0.2 with the true map stays where it is (minilm ->
multilingual-e5, 30,904 rows per side: the anchor stage's starts are at 0.02-0.14). A
one-to-one assignment cannot pile rows onto hubs: every B row of the batch is used once, so
the pairs must respect the whole shape of B's batch, and averaged over hundreds of fresh
batches the cross-covariance drifts towards the true map. Measured (docs/experiments.md):
from a start at agreement 0.12, 200 steps of 2,000-row batches reach agreement 0.61 (top-1
0.73), and refine-mutual then ends at top-1 0.909 of a 0.967 ceiling; 1,000-row batches stall
at ~0.16, so the batch must not be too small.

The batches of a step are solved on up to ``n_threads`` threads (the solver releases the GIL);
they are drawn up front in a fixed order and combined in that order, so the result does not
depend on the thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._threads import resolve_n_threads, single_threaded_blas
from .procrustes import procrustes

BATCHES_PER_STEP = 2   # pairs of batches solved per step (on up to n_threads threads)
MOMENTUM = 0.5         # weight of the running cross-covariance (0.8 was measured slower)


def assignment_bytes(rows, d_a, d_b):
    """Memory of one step: per batch the score matrix (float32 and scipy's float64 copy),
    the batches and their images."""
    return BATCHES_PER_STEP * (12 * rows * rows + 4 * rows * (d_a + 2 * d_b))


def _batch_cross_covariance(W32, rows_a, rows_b):
    scores = (rows_a @ W32) @ rows_b.T
    assigned_a, assigned_b = linear_sum_assignment(scores, maximize=True)
    return rows_a[assigned_a].T.astype(np.float64) @ rows_b[assigned_b].astype(np.float64)


def refine_assignment(W, X_a, X_b, *, n_iter, sample_size, rng, n_threads=None,
                      momentum=MOMENTUM):
    """Refine-assignment. X_a, X_b: centred unit-norm float32 rows; each step uses
    ``BATCHES_PER_STEP`` batches of min(sample_size, rows of the smaller side) rows per side.
    Returns the new W (the input W when n_iter is 0)."""
    if n_iter == 0:
        return W
    n_threads = resolve_n_threads(n_threads)
    n_a, n_b = X_a.shape[0], X_b.shape[0]
    size = min(sample_size, n_a, n_b)
    M = None
    workers = min(n_threads, BATCHES_PER_STEP)
    # BLAS held to one thread: the batches' products run side by side on the workers, and a
    # one-thread product gives the same bits whatever n_threads is
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(n_iter):
            batches = [(X_a[np.sort(rng.choice(n_a, size, replace=False))],
                        X_b[np.sort(rng.choice(n_b, size, replace=False))])
                       for _ in range(BATCHES_PER_STEP)]
            W32 = np.ascontiguousarray(W, dtype=np.float32)
            parts = list(pool.map(lambda batch: _batch_cross_covariance(W32, *batch), batches))
            step = sum(parts) / (BATCHES_PER_STEP * size)
            M = step if M is None else momentum * M + (1.0 - momentum) * step
            W = procrustes(M)
    return W
