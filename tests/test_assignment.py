"""Refine-assignment: a step against a dense reference (scipy's assignment, float64), thread
invariance, and the stage's reason to exist on the real sample."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from conftest import assert_semi_orthogonal, noisy_rotation_start, random_unit_rows
import minivec2vec.assignment as assignment
from minivec2vec.assignment import (BATCHES_PER_STEP, EXTRAPOLATE_EVERY, _climbed_and_levelled,
                                     refine_assignment)
from minivec2vec.procrustes import procrustes
from minivec2vec.refine import refine_mutual


def test_one_step_on_whole_sides_is_procrustes_of_the_optimal_assignment():
    """With batches as large as the sides, a step pairs the rows by the maximum-total-cosine
    permutation (checked against the brute-force optimum on 7 rows) and fits Procrustes."""
    import itertools
    rng = np.random.default_rng(0)
    A, B = random_unit_rows(rng, 7, 5), random_unit_rows(rng, 7, 5)
    W0 = procrustes(rng.standard_normal((5, 5)))
    S = A.astype(np.float64) @ W0 @ B.T.astype(np.float64)
    best = max(itertools.permutations(range(7)), key=lambda p: S[np.arange(7), list(p)].sum())
    expected = procrustes(A.T.astype(np.float64) @ B[list(best)].astype(np.float64))
    W = refine_assignment(W0, A, B, n_iter=1, sample_size=7, rng=np.random.default_rng(1))
    np.testing.assert_allclose(W, expected, atol=1e-6)
    assert_semi_orthogonal(W)


def test_result_does_not_depend_on_the_thread_count():
    rng = np.random.default_rng(2)
    A, B = random_unit_rows(rng, 900, 32), random_unit_rows(rng, 800, 24)
    W0 = procrustes(rng.standard_normal((32, 24)))
    runs = [refine_assignment(W0, A, B, n_iter=2 * EXTRAPOLATE_EVERY + 2, sample_size=300,
                              rng=np.random.default_rng(3), n_threads=t) for t in (1, 2, 3)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert BATCHES_PER_STEP >= 2      # so that the threads have batches to share


def test_climbs_from_a_start_that_nearest_neighbours_make_worse(rotation_split):
    """Oracle: minilm vs rotated minilm, 2,000 rows per side (disjoint texts), from the true
    rotation plus noise (top-1 ~0.15 on the pool). Refine-mutual's nearest-neighbour pairs
    lose what is there; one-to-one assignments on 1,000-row batches recover the rotation."""
    n = 2000
    A, B, W_start, top1 = noisy_rotation_start(rotation_split, n, 8.0)
    start = top1(W_start)
    assert 0.05 < start < 0.3
    mutual = refine_mutual(W_start, A, B, n_iter=12, sample_size=n, csls_k=10,
                           rng=np.random.default_rng(0), n_threads=2)
    assert top1(mutual) < start
    W = refine_assignment(W_start, A, B, n_iter=60, sample_size=1000,
                          rng=np.random.default_rng(0), n_threads=2)
    assert top1(W) >= 0.95
    assert_semi_orthogonal(W)


def test_plateau_rule_stops_only_after_a_climb():
    flat = [0.300, 0.3002, 0.3001, 0.3003, 0.3002, 0.3004]
    assert not any(_climbed_and_levelled(flat[:i]) for i in range(1, len(flat) + 1))
    rising = [0.300, 0.305, 0.312, 0.320, 0.330]
    assert not any(_climbed_and_levelled(rising[:i]) for i in range(1, len(rising) + 1))
    levelled = rising + [0.3402, 0.3404, 0.3405]
    assert not _climbed_and_levelled(levelled[:-1])   # still rose 0.0104 over two windows
    assert _climbed_and_levelled(levelled)


def test_stops_once_the_map_has_climbed_and_levelled(rotation_split, monkeypatch):
    """The climb of the oracle above levels off well before 400 steps: the stage stops there
    and gives the recovered rotation."""
    n = 2000
    A, B, W_start, top1 = noisy_rotation_start(rotation_split, n, 8.0)
    calls = []
    solve = assignment._batch_cross_covariance
    monkeypatch.setattr(assignment, "_batch_cross_covariance",
                        lambda *args: calls.append(1) or solve(*args))
    W = refine_assignment(W_start, A, B, n_iter=400, sample_size=1000,
                          rng=np.random.default_rng(0), n_threads=2)
    assert top1(W) >= 0.95
    assert len(calls) < 400 * BATCHES_PER_STEP / 2


def test_sparse_assignment_matches_the_dense_optimum():
    """Over each row's 100 best columns the optimum is one-to-one and, on random low-rank
    scores, within 1e-4 of the dense optimum's total (scipy's linear_sum_assignment)."""
    rng = np.random.default_rng(5)
    scores = (rng.standard_normal((600, 16)) @ rng.standard_normal((16, 600))).astype(np.float32)
    rows, cols = assignment._assign(scores)
    assert np.array_equal(np.sort(rows), np.arange(600))
    assert np.array_equal(np.sort(cols), np.arange(600))
    dense_rows, dense_cols = linear_sum_assignment(scores, maximize=True)
    best = scores[dense_rows, dense_cols].astype(np.float64).sum()
    got = scores[rows, cols].astype(np.float64).sum()
    assert best - 1e-4 * abs(best) <= got <= best + 1e-3


def test_sparse_assignment_falls_back_when_the_candidates_hold_no_perfect_matching():
    """Every row's 100 best columns are the same 100: no perfect matching among them, so the
    dense solver gives the optimum."""
    rng = np.random.default_rng(6)
    scores = rng.random((300, 300)).astype(np.float32)
    scores[:, :100] += 10.0
    rows, cols = assignment._assign(scores)
    dense_rows, dense_cols = linear_sum_assignment(scores, maximize=True)
    assert np.isclose(scores[rows, cols].sum(), scores[dense_rows, dense_cols].sum())
    assert np.array_equal(np.sort(cols), np.arange(300))
