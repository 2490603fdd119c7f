"""Refine-assignment (ours, beyond the paper): Wasserstein-Procrustes on random batches, with
exact one-to-one assignments, for large inputs.

Each step draws ``BATCHES_PER_STEP`` pairs of batches of ``sample_size`` rows (one batch per
side, fresh rows every step), solves the linear assignment that pairs every mapped A row of a
batch with a distinct B row of maximum total cosine, and averages the batches' cross-covariances
of the assigned pairs into a running cross-covariance M <- momentum M + (1 - momentum) M_step.
W is the Procrustes solution of M. The assignment is solved exactly over the ``CANDIDATES`` =
100 best-scoring B rows of every A row by the compiled kernels (csrc/assignment.hpp):
``_core.row_topk`` picks them, ``_core.sparse_assignment`` solves that sparse problem by
shortest augmenting paths with potentials (Jonker-Volgenant style, double precision: scipy's
``min_weight_full_bipartite_matching`` optimum on the same edges), with the dense solver
(scipy's ``linear_sum_assignment``) as the fallback when those edges hold no perfect matching
or the batch has at most CANDIDATES columns. On 2,000-row batches of minilm -> multilingual-e5
the sparse optimum is the dense one from a random map, and from a map near the true one within
1.6e-5 (relative) of its total score, with 99% of its pairs. Per batch on one thread (Intel
Xeon, 2 cores shared with other jobs at load ~3, medians of 7): the candidates and the
assignment take 20-27 ms (argpartition and scipy's LAPJVsp took 69-123 ms, the dense solver
250-300 ms), beside 27 ms for the score matrix and 13 ms for the float64 cross-covariance; a
step of two batches and the Procrustes fit takes 0.18 s (0.39 s with scipy's solver). Every
``EXTRAPOLATE_EVERY`` = 10 steps the map's drift over those steps is extrapolated once
(W <- polar(2 W - W_before)), and the stage stops early once the mean assignment score has
climbed and levelled off.

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
The first phase of a climb is a slow drift whose length depends on the start and on the
batches drawn: on twelve e5 -> minilm starts (agreement 0.03-0.12) two had climbed by step
200 and seven by step 350, and one start that had not climbed by step 500 with one batch
stream climbed by then with others; the fit's default is 1,000 steps (``assignment_iter``).

The batches of a step are solved on up to ``n_threads`` threads (the kernels are
single-threaded and deterministic); they are drawn up front in a fixed order and combined in
that order, so the result does not depend on the thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.optimize import linear_sum_assignment

from .. import _core
from .._runtime.threads import resolve_n_threads, single_threaded_blas
from ..kernels.procrustes import procrustes

BATCHES_PER_STEP = 2   # pairs of batches solved per step (on up to n_threads threads)
MOMENTUM = 0.5         # weight of the running cross-covariance (0.8 was measured slower)
EXTRAPOLATE_EVERY = 10  # steps between extrapolations of the map's drift
EXTRAPOLATION = 1.0     # W <- polar(W + EXTRAPOLATION (W - W 10 steps before))
CANDIDATES = 100       # edges per row of the sparse assignment (the best-scoring B rows)
PLATEAU_WINDOW = 10     # steps per window of the mean assignment score
CLIMB_RISE = 0.01       # a climb: the window score rose this much above the first window's
PLATEAU_RISE = 0.0005   # ... and then rose less than this over the last two windows: stop


def assignment_bytes(rows, d_a, d_b):
    """Memory of one step: per batch the score matrix (float32, and the float64 copy of the
    dense fallback), the batches and their images."""
    return BATCHES_PER_STEP * (12 * rows * rows + 4 * rows * (d_a + 2 * d_b))


def _assign(scores):
    """Rows (ascending) and columns of a one-to-one assignment of maximum total score: the
    exact optimum over the CANDIDATES best-scoring columns of every row (the compiled
    ``row_topk`` and ``sparse_assignment``), or over all of them (scipy's dense
    ``linear_sum_assignment``) when those edges hold no perfect matching or the batch is that
    small."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    n_rows, n_cols = scores.shape
    if n_cols > CANDIDATES and n_rows <= n_cols:
        values, columns = _core.row_topk(scores, CANDIDATES)
        try:
            return _core.sparse_assignment(columns, values, n_cols)
        except _core.NoPerfectMatchingError:     # the candidate edges admit none
            pass
    return linear_sum_assignment(scores, maximize=True)


def _batch_cross_covariance(W32, rows_a, rows_b):
    """The assigned pairs' cross-covariance and their summed score (cosine)."""
    scores = (rows_a @ W32) @ rows_b.T
    assigned_a, assigned_b = _assign(scores)
    # every row is assigned and the rows come back in order: rows_a needs no gather
    pairs_a = rows_a if assigned_a.shape[0] == rows_a.shape[0] else rows_a[assigned_a]
    cross = pairs_a.T.astype(np.float64) @ rows_b[assigned_b].astype(np.float64)
    return cross, float(scores[assigned_a, assigned_b].astype(np.float64).sum())


def _climbed_and_levelled(window_scores):
    """True once the windowed mean assignment score has risen CLIMB_RISE above its first
    window (the map climbed out of its start) and then gained less than PLATEAU_RISE over the
    last two windows (it has reached its fixed point). A map that never climbed runs on."""
    if len(window_scores) < 4:
        return False
    return (window_scores[-1] - window_scores[0] > CLIMB_RISE
            and window_scores[-1] - window_scores[-3] < PLATEAU_RISE)


def refine_assignment(W, X_a, X_b, *, n_iter, sample_size, rng, n_threads=None,
                      momentum=MOMENTUM, extrapolation=EXTRAPOLATION, on_step=None):
    """Refine-assignment. X_a, X_b: centred unit-norm float32 rows; each step uses
    ``BATCHES_PER_STEP`` batches of min(sample_size, rows of the smaller side) rows per side.
    Every ``EXTRAPOLATE_EVERY`` steps the map's drift is extrapolated by ``extrapolation``
    (0 = never). It stops before ``n_iter`` steps once the map has climbed and levelled off
    (see ``_climbed_and_levelled``). ``on_step`` (optional) is called after each step.
    Returns the new W (the input W when n_iter is 0)."""
    climb = AssignmentClimb(W, X_a, X_b, sample_size=sample_size, rng=rng, momentum=momentum,
                            extrapolation=extrapolation)
    climb.run(n_iter, n_threads=n_threads, on_step=on_step)
    return climb.W


class AssignmentClimb:
    """Refine-assignment as a resumable state: :meth:`run` takes up to n more steps and can be
    called again, so a caller can look at the map between runs (the fit checks it after a
    first stretch of steps; see :func:`minivec2vec.pipeline.initial_map`). Running n steps,
    then m more, gives the same map as running n + m at once. ``W``: the current map;
    ``steps``: the steps run so far; ``levelled``: True once the stage's stopping rule has
    fired (further runs do nothing)."""

    def __init__(self, W, X_a, X_b, *, sample_size, rng, momentum=MOMENTUM,
                 extrapolation=EXTRAPOLATION):
        self.W = W
        self.X_a, self.X_b = X_a, X_b
        self.size = min(sample_size, X_a.shape[0], X_b.shape[0])
        self.rng = rng
        self.momentum, self.extrapolation = momentum, extrapolation
        self.steps = 0
        self.levelled = False
        self._M = None
        self._W_before = W
        self._step_scores, self._window_scores = [], []

    def run(self, n_steps, *, n_threads=None, on_step=None):
        """Up to ``n_steps`` more steps (fewer once the map has climbed and levelled off);
        ``on_step`` (optional) is called after each. Returns ``levelled``."""
        if n_steps <= 0 or self.levelled:
            return self.levelled
        n_threads = resolve_n_threads(n_threads)
        n_a, n_b, size = self.X_a.shape[0], self.X_b.shape[0], self.size
        workers = min(n_threads, BATCHES_PER_STEP)
        # BLAS held to one thread: the batches' products run side by side on the workers, and
        # a one-thread product gives the same bits whatever n_threads is
        with single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in range(n_steps):
                self.steps += 1
                batches = [(self.X_a[np.sort(self.rng.choice(n_a, size, replace=False))],
                            self.X_b[np.sort(self.rng.choice(n_b, size, replace=False))])
                           for _ in range(BATCHES_PER_STEP)]
                W32 = np.ascontiguousarray(self.W, dtype=np.float32)
                parts = list(pool.map(lambda batch: _batch_cross_covariance(W32, *batch),
                                      batches))
                step = sum(cross for cross, _ in parts) / (BATCHES_PER_STEP * size)
                self._step_scores.append(sum(total for _, total in parts)
                                         / (BATCHES_PER_STEP * size))
                M = step if self._M is None else (self.momentum * self._M
                                                  + (1.0 - self.momentum) * step)
                W = procrustes(M)
                if self.steps % EXTRAPOLATE_EVERY == 0 and self.extrapolation:
                    # the climb from a weak start is a slow, steady drift for the first ~100
                    # steps: doubling each 10-step drift halves that phase
                    # (docs/experiments.md); M is reset to the new map at M's mean singular
                    # value, so the running average carries on from it
                    W = procrustes(W + self.extrapolation * (W - self._W_before))
                    M = np.linalg.svd(M, compute_uv=False).mean() * W
                    self._W_before = W
                self.W, self._M = W, M
                if on_step is not None:
                    on_step()
                if self.steps % PLATEAU_WINDOW == 0:
                    self._window_scores.append(
                        float(np.mean(self._step_scores[-PLATEAU_WINDOW:])))
                    if _climbed_and_levelled(self._window_scores):
                        self.levelled = True
                        break
        return self.levelled
