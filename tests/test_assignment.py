"""Refine-assignment: a step against a dense reference (scipy's assignment, float64), thread
invariance, and the stage's reason to exist on the real sample."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from conftest import assert_semi_orthogonal, noisy_rotation_start, random_unit_rows
from minivec2vec.assignment import BATCHES_PER_STEP, refine_assignment
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
    runs = [refine_assignment(W0, A, B, n_iter=6, sample_size=300,
                              rng=np.random.default_rng(3), n_threads=t) for t in (1, 2, 3)]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert BATCHES_PER_STEP >= 2      # so that the threads have batches to share


def test_zero_iterations_leave_w_unchanged():
    rng = np.random.default_rng(4)
    A, B = random_unit_rows(rng, 50, 8), random_unit_rows(rng, 60, 8)
    W0 = procrustes(rng.standard_normal((8, 8)))
    assert refine_assignment(W0, A, B, n_iter=0, sample_size=40, rng=rng) is W0


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
