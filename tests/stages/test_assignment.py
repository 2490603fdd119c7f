"""Refine-assignment: a step against a dense reference (scipy's assignment, float64), thread
invariance, and the stage's reason to exist on the real sample; the compiled sparse assignment
and candidate selection against scipy's sparse and dense optima."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from conftest import assert_semi_orthogonal, noisy_rotation_start, random_unit_rows
import minivec2vec.stages.assignment as assignment
from minivec2vec import _core
from minivec2vec.stages.assignment import (BATCHES_PER_STEP, EXTRAPOLATE_EVERY, _climbed_and_levelled,
                                           refine_assignment)
from minivec2vec.kernels.procrustes import procrustes
from minivec2vec.stages.refine import refine_mutual


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


# ---- the compiled kernels: _core.sparse_assignment and _core.row_topk --------------------------

def _matched_total(columns, scores, rows, cols):
    """Check (rows, cols) is a perfect matching on the candidate edges; its total score."""
    n = columns.shape[0]
    assert rows.dtype == np.int64 and cols.dtype == np.int64
    assert np.array_equal(rows, np.arange(n))
    assert np.unique(cols).size == n
    hit = columns[rows] == cols[:, None]
    assert hit.any(axis=1).all(), "a row was given a column outside its candidates"
    return float(np.where(hit, scores[rows].astype(np.float64), -np.inf).max(axis=1).sum())


def _scipy_sparse_total(columns, scores, n_cols):
    """scipy's LAPJVsp optimum on the same edges (costs 2 - score: positive, so that no edge is
    an implicit zero), or None when it finds no perfect matching."""
    n, k = columns.shape
    graph = csr_matrix(((2.0 - scores.astype(np.float64)).ravel(), columns.ravel(),
                        np.arange(0, n * k + 1, k)), shape=(n, n_cols))
    try:
        rows, cols = min_weight_full_bipartite_matching(graph)
    except ValueError:
        return None
    return float((2.0 - np.asarray(graph[rows, cols]).ravel()).sum())


def _instance(seed, n, k, n_cols, kind):
    rng = np.random.default_rng(seed)
    S = (rng.standard_normal((n, 16)) @ rng.standard_normal((16, n_cols))
         + 4.0 * rng.standard_normal((n, n_cols))).astype(np.float32)
    if kind == "best":      # every row's k best columns, as refine-assignment uses
        columns = np.argsort(-S, axis=1, kind="stable")[:, :k]
    else:                   # k random columns per row
        columns = np.argsort(rng.random((n, n_cols)), axis=1)[:, :k]
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    return columns, np.ascontiguousarray(np.take_along_axis(S, columns, axis=1))


@pytest.mark.parametrize("seed, n, k, n_cols, kind", [
    (0, 50, 5, 50, "random"), (1, 50, 10, 80, "best"), (2, 300, 20, 300, "best"),
    (3, 400, 8, 700, "random"), (4, 1000, 40, 1000, "random"), (5, 1200, 30, 2000, "best"),
    (6, 2000, 100, 2000, "best"), (7, 2000, 100, 2600, "random"),
])
def test_sparse_assignment_has_scipys_sparse_optimum(seed, n, k, n_cols, kind):
    columns, scores = _instance(seed, n, k, n_cols, kind)
    expected = _scipy_sparse_total(columns, scores, n_cols)
    assert expected is not None          # these instances hold a perfect matching
    rows, cols = _core.sparse_assignment(columns, scores, n_cols)
    got = _matched_total(columns, scores, rows, cols)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("n, n_cols", [(1, 1), (7, 7), (200, 200), (60, 90), (150, 400)])
def test_sparse_assignment_on_all_columns_has_the_dense_optimum(n, n_cols):
    rng = np.random.default_rng(n + n_cols)
    S = rng.standard_normal((n, n_cols)).astype(np.float32)
    columns = np.ascontiguousarray(np.broadcast_to(np.arange(n_cols), (n, n_cols)))
    rows, cols = _core.sparse_assignment(columns, S, n_cols)
    dense_rows, dense_cols = linear_sum_assignment(S, maximize=True)
    best = float(S[dense_rows, dense_cols].astype(np.float64).sum())
    assert _matched_total(columns, S, rows, cols) == pytest.approx(best, rel=1e-9, abs=1e-9)


def test_sparse_assignment_agrees_with_scipy_on_which_graphs_have_no_perfect_matching():
    """Random graphs of 4 candidates per row on 40 x 40 sit near the feasibility threshold: the
    kernel finds a matching exactly when scipy does, with the same optimum."""
    verdicts = set()
    for seed in range(30):
        columns, scores = _instance(100 + seed, 40, 4, 40, "random")
        expected = _scipy_sparse_total(columns, scores, 40)
        if expected is None:
            with pytest.raises(_core.NoPerfectMatchingError):
                _core.sparse_assignment(columns, scores, 40)
        else:
            rows, cols = _core.sparse_assignment(columns, scores, 40)
            assert _matched_total(columns, scores, rows, cols) == pytest.approx(expected, rel=1e-9)
        verdicts.add(expected is None)
    assert verdicts == {True, False}       # both kinds were seen


def test_sparse_assignment_reports_no_perfect_matching():
    one = np.ones((2, 1), dtype=np.float32)
    # two rows whose only candidate is the same column
    with pytest.raises(_core.NoPerfectMatchingError, match="no perfect matching"):
        _core.sparse_assignment(np.array([[3], [3]], dtype=np.int64), one, 5)
    # three rows sharing two columns, reached only through the augmenting-path search
    columns = np.array([[0, 1], [1, 0], [0, 1], [2, 3]], dtype=np.int64)
    with pytest.raises(_core.NoPerfectMatchingError):
        _core.sparse_assignment(columns, np.ones((4, 2), dtype=np.float32), 10)
    # more rows than columns
    with pytest.raises(_core.NoPerfectMatchingError):
        _core.sparse_assignment(np.zeros((3, 1), dtype=np.int64), np.ones((3, 1), np.float32), 2)
    # no candidates at all
    with pytest.raises(_core.NoPerfectMatchingError):
        _core.sparse_assignment(np.zeros((2, 0), dtype=np.int64), np.ones((2, 0), np.float32), 4)
    assert issubclass(_core.NoPerfectMatchingError, ValueError)
    rows, cols = _core.sparse_assignment(np.zeros((0, 3), np.int64),
                                         np.zeros((0, 3), np.float32), 0)
    assert rows.shape == cols.shape == (0,)


def test_sparse_assignment_rejects_bad_input():
    columns = np.array([[0, 1], [1, 2]], dtype=np.int64)
    scores = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(TypeError, match="columns: expected dtype int64"):
        _core.sparse_assignment(columns.astype(np.int32), scores, 3)
    with pytest.raises(TypeError, match="scores: expected dtype float32"):
        _core.sparse_assignment(columns, scores.astype(np.float64), 3)
    with pytest.raises(ValueError, match="2-D"):
        _core.sparse_assignment(columns.ravel(), scores, 3)
    with pytest.raises(ValueError, match="shape"):
        _core.sparse_assignment(columns, np.ones((2, 3), dtype=np.float32), 3)
    with pytest.raises(ValueError, match=r"columns\[1, 1\] = 2 is outside \[0, n_cols = 2\)"):
        _core.sparse_assignment(columns, scores, 2)
    with pytest.raises(ValueError, match="outside"):
        _core.sparse_assignment(columns - 1, scores, 3)
    with pytest.raises(ValueError, match="contiguous"):
        _core.sparse_assignment(np.zeros((2, 4), np.int64)[:, ::2], scores, 3)
    with pytest.raises(ValueError, match="contiguous"):
        _core.sparse_assignment(columns, np.ones((4, 2), np.float32)[::2], 3)
    with pytest.raises(ValueError, match="contiguous"):
        _core.sparse_assignment(np.asfortranarray(columns), scores, 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _core.sparse_assignment(columns, np.array([[1, 2], [np.nan, 0]], np.float32), 3)
    with pytest.raises(ValueError, match="n_cols"):
        _core.sparse_assignment(columns, scores, -1)


def test_sparse_assignment_is_deterministic_and_breaks_ties_to_the_lower_index():
    columns, scores = _instance(9, 1500, 50, 1500, "best")
    first = _core.sparse_assignment(columns, scores, 1500)
    second = _core.sparse_assignment(columns.copy(), scores.copy(), 1500)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # nor does it depend on the order of a row's candidates
    order = np.argsort(np.random.default_rng(0).random(columns.shape), axis=1)
    shuffled = _core.sparse_assignment(np.take_along_axis(columns, order, axis=1),
                                       np.take_along_axis(scores, order, axis=1), 1500)
    assert np.array_equal(first[1], shuffled[1])
    # all scores equal: the lowest free column for every row in turn, the identity
    n = 40
    ties = _core.sparse_assignment(np.ascontiguousarray(np.broadcast_to(np.arange(n), (n, n))),
                                   np.zeros((n, n), np.float32), n)
    assert np.array_equal(ties[1], np.arange(n))
    # equally good candidates: the lower column
    _, cols = _core.sparse_assignment(np.array([[5, 2], [7, 9]], np.int64),
                                      np.array([[1.0, 1.0], [0.5, 0.5]], np.float32), 10)
    assert cols.tolist() == [2, 7]
    # a column listed twice in a row counts with its best score
    _, cols = _core.sparse_assignment(np.array([[1, 1], [0, 1]], np.int64),
                                      np.array([[0.2, 0.9], [0.5, 0.1]], np.float32), 2)
    assert cols.tolist() == [1, 0]


def _reference_topk(S, k):
    """Row by row, best first: higher score first, then lower column; NaN below every number."""
    out = []
    for row in S:
        key = np.where(np.isnan(row), -np.inf, row)
        out.append(np.lexsort((np.arange(row.size), np.isnan(row), -key))[:k])
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("n_cols, k", [(1, 1), (50, 7), (2000, 100), (3000, 100), (4096, 600)])
def test_row_topk_selects_the_k_best_columns_best_first_lowest_first_on_ties(n_cols, k):
    rng = np.random.default_rng(n_cols + k)
    S = rng.standard_normal((30, n_cols)).astype(np.float32)
    S[:10] = np.round(S[:10], 1)            # many ties
    S[10:12] = 0.0                          # a whole row of ties
    S[12, ::3] = np.nan                     # NaN ranks last
    S[13] = np.sort(S[13])                  # rising rows defeat a strided sample...
    S[14] = np.sort(S[14])[::-1]
    S[15] = np.where(np.arange(n_cols) % 17 == 0, 5.0, S[15])  # ... and so do periodic spikes
    values, columns = _core.row_topk(S, k)
    assert values.dtype == np.float32 and columns.dtype == np.int64
    assert values.shape == columns.shape == (30, k)
    np.testing.assert_array_equal(columns, _reference_topk(S, k))
    np.testing.assert_array_equal(values, np.take_along_axis(S, columns, axis=1))
    if n_cols >= k + 3:
        assert columns[10].tolist() == list(range(k))


def test_row_topk_rejects_bad_input():
    S = np.ones((3, 10), dtype=np.float32)
    with pytest.raises(TypeError, match="expected dtype float32"):
        _core.row_topk(S.astype(np.float64), 2)
    with pytest.raises(ValueError, match="2-D"):
        _core.row_topk(S.ravel(), 2)
    with pytest.raises(ValueError, match="k must be in"):
        _core.row_topk(S, 0)
    with pytest.raises(ValueError, match="k must be in"):
        _core.row_topk(S, 11)
    with pytest.raises(ValueError, match="contiguous"):
        _core.row_topk(np.ones((3, 20), np.float32)[:, ::2], 2)
    values, columns = _core.row_topk(np.ones((6, 10), np.float32)[::2], 2)   # a row stride is fine
    assert columns.tolist() == [[0, 1]] * 3


def test_assign_is_scipys_sparse_optimum_on_real_like_scores():
    """_assign keeps CANDIDATES = 100 columns per row and solves them exactly: the same total
    as scipy's LAPJVsp on the argpartition candidates."""
    rng = np.random.default_rng(11)
    A, B = random_unit_rows(rng, 1500, 24), random_unit_rows(rng, 1500, 24)
    scores = (A @ procrustes(rng.standard_normal((24, 24))).astype(np.float32)) @ B.T
    rows, cols = assignment._assign(scores)
    n = scores.shape[1]
    keep = assignment.CANDIDATES
    candidates = np.argpartition(scores, n - keep, axis=1)[:, n - keep:]
    candidates = np.ascontiguousarray(candidates, dtype=np.int64)
    values = np.ascontiguousarray(np.take_along_axis(scores, candidates, axis=1))
    expected = _scipy_sparse_total(candidates, values, n)
    got = _matched_total(candidates, values, rows, cols)
    assert got == pytest.approx(expected, rel=1e-9)
