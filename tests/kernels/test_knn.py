"""knn / merge_topk against exact brute force (numpy argsort of the full similarity matrix)."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minivec2vec import ShapeError, knn, merge_topk
from knn_oracle import assert_matches_brute_force, brute_force, integer_data, similarity

# the package re-exports the function ``knn`` under the submodule's name
knn_module = importlib.import_module("minivec2vec.kernels.knn")
ALL_ENGINES = ("blas", "int8", "int8-avx2")
ENGINES = [name for name in ALL_ENGINES if name in knn_module.available_engines()]
INT8_ENGINES = [name for name in ENGINES if name != "blas"]


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.skipif(
    name not in ENGINES, reason=f"this CPU cannot run the {name!r} kNN engine"))
    for name in ALL_ENGINES], autouse=True)
def engine(request, monkeypatch):
    """Every test of this module runs once per engine this CPU has: all must be exact."""
    monkeypatch.setattr(knn_module, "ENGINE", request.param)
    return request.param


# ------------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("n_queries,n_database,k", [
    (1, 1, 1),          # smallest possible problem
    (37, 100, 1),       # database much smaller than one tile
    (37, 100, 100),     # k == n_database: a full sort
    (300, 4500, 1),     # odd sizes: 8 query blocks of 38 rows, three tiles (last 404 rows)
    (300, 4500, 17),    # k not a power of two, > 16 lanes
    (513, 2049, 50),    # one row past a tile boundary
])
def test_knn_equals_brute_force_random(metric, dtype, n_queries, n_database, k):
    rng = np.random.default_rng(n_queries * 7919 + n_database + k)
    d = 33
    Q = rng.standard_normal((n_queries, d)).astype(dtype)
    D = rng.standard_normal((n_database, d)).astype(dtype)
    scores, indices = knn(Q, D, k, metric=metric)
    atol = 1e-4 if metric == "ip" else 2e-6
    assert_matches_brute_force(scores, indices, Q, D, k, metric, atol)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("k", [1, 5, 64])
def test_knn_exact_on_integer_data_with_many_ties(metric, k):
    """Integer data: exact arithmetic, thousands of exact ties, the result must be the oracle's
    bit for bit (ties broken by the lower index)."""
    rng = np.random.default_rng(k)
    Q = integer_data(rng, 200, 6)
    D = integer_data(rng, 5000, 6)
    scores, indices = knn(Q, D, k, metric=metric)
    ref_scores, ref_indices, _ = brute_force(Q, D, k, metric)
    if metric == "ip":
        np.testing.assert_array_equal(indices, ref_indices)
        np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))
    else:
        # cosine normalises in float32: equal directions still give bit-equal scores, but
        # parallel rows of different lengths (exactly tied in exact arithmetic) may round
        # 1 ulp apart: those near-ties are common here, so only their size is checked
        assert_matches_brute_force(scores, indices, Q, D, k, metric, atol=1e-6, max_differ=1.0)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_knn_on_real_sample(minilm, metric):
    Q = minilm[4000:4300]
    D = minilm[:4000]
    scores, indices = knn(Q, D, 10, metric=metric)
    atol = 1e-5 * float(np.abs(similarity(Q[:5], D, "ip")).max()) if metric == "ip" else 2e-6
    assert_matches_brute_force(scores, indices, Q, D, 10, metric, atol)


def test_knn_real_sample_self_search_finds_itself(minilm):
    """Cosine search of rows among themselves: each row's best match is itself (score 1)."""
    X = minilm[:1500]
    scores, indices = knn(X, X, 1, metric="cosine")
    # a few texts may be exact duplicates: then the lower index wins and the score is still 1
    # (to float32 rounding of a 384-term dot product of unit rows: a few ulps)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=4e-6)
    exact_self = indices[:, 0] == np.arange(1500)
    dup = ~exact_self
    assert exact_self.mean() > 0.99
    assert np.all(indices[dup, 0] < np.arange(1500)[dup])


# ------------------------------------------------------------------------------------ ties
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_ties_go_to_the_lower_index(rng, metric):
    """Duplicate database rows, spread over different tiles: the lower index ranks first."""
    d = 16
    D = rng.standard_normal((6000, d)).astype(np.float32)
    target = rng.standard_normal(d).astype(np.float32) * 10
    copies = [5000, 17, 2048, 4095, 2047]          # out of order, across tile boundaries
    D[copies] = target
    Q = np.stack([target, target * 3]).astype(np.float32)
    scores, indices = knn(Q, D, len(copies), metric=metric)
    expected = sorted(copies)
    np.testing.assert_array_equal(indices, [expected, expected])
    assert np.all(scores[:, 0] == scores[:, -1]), "copies of one row must have equal scores"
    # k = 1 keeps only the lowest index
    _, top1 = knn(Q, D, 1, metric=metric)
    np.testing.assert_array_equal(top1[:, 0], [17, 17])


def test_all_equal_scores_give_first_k_indices():
    D = np.ones((3000, 4), dtype=np.float32)
    Q = np.ones((3, 4), dtype=np.float32)
    scores, indices = knn(Q, D, 9)
    np.testing.assert_array_equal(indices, np.tile(np.arange(9), (3, 1)))
    assert np.all(scores == 4.0)


def test_cosine_zero_rows_score_zero():
    D = np.array([[0, 0], [1, 0], [-1, 0]], dtype=np.float32)
    Q = np.array([[0, 1], [0, 0]], dtype=np.float32)
    scores, indices = knn(Q, D, 3, metric="cosine")
    # query [0, 1] is orthogonal to every row: all three score 0, ordered by index
    np.testing.assert_array_equal(indices[0], [0, 1, 2])
    np.testing.assert_array_equal(scores[0], [0, 0, 0])
    # a zero query scores 0 everywhere
    np.testing.assert_array_equal(scores[1], [0, 0, 0])


# ------------------------------------------------------------------------------------ errors
def test_k_larger_than_database_raises(rng):
    D = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="larger than the database"):
        knn(D, D, 11)


@pytest.mark.parametrize("k,exc", [(0, ValueError), (-1, ValueError), (2.0, TypeError),
                                   (True, TypeError)])
def test_bad_k_raises(rng, k, exc):
    D = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(exc, match="k"):
        knn(D, D, k)


def test_wrong_dimensions_raise(rng):
    Q = rng.standard_normal((5, 4)).astype(np.float32)
    D = rng.standard_normal((10, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="database: has 5 features, expected 4"):
        knn(Q, D, 1)
    with pytest.raises(ValueError, match="2-D"):
        knn(Q[0], D[:, :4], 1)
    with pytest.raises(ValueError, match="2-D"):
        knn(Q, D[None], 1)


def test_unknown_engine_raises(rng):
    Q = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="engine"):
        knn(Q, Q, 1, engine="gpu")


def test_engines_agree_on_real_sample(minilm, engine):
    """Every engine is exact: the same neighbours on real vectors (scores to float32 rounding)."""
    if engine == "blas":
        pytest.skip("compares an int8 engine with the BLAS one")
    Q, D = minilm[4000:4500], minilm[:4000]
    s_int8, i_int8 = knn(Q, D, 20, metric="cosine", engine=engine)
    s_blas, i_blas = knn(Q, D, 20, metric="cosine", engine="blas")
    assert (i_int8 != i_blas).mean() < 1e-3  # only float32 near-ties may swap
    np.testing.assert_allclose(s_int8, s_blas, rtol=0, atol=4e-6)


# ------------------------------------------------------------------------------------ engines
IMPORT = "import importlib; m = importlib.import_module('minivec2vec.kernels.knn')\n"


def _python(code, **env):
    environment = dict(os.environ)
    environment.update(env)
    src = str(Path(knn_module.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = src + os.pathsep + environment.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True,
                          text=True, timeout=120)


def test_the_default_engine_is_the_best_this_cpu_runs(engine):
    if engine != "blas":
        pytest.skip("checked once")
    result = _python(IMPORT + "print(m.ENGINE, *m.available_engines())",
                     MINIVEC2VEC_KNN_ENGINE="")
    assert result.returncode == 0, result.stderr
    default, *available = result.stdout.split()
    assert available == ENGINES_BEST_FIRST and default == available[0]


ENGINES_BEST_FIRST = [name for name in ("int8", "int8-avx2", "blas") if name in ENGINES]


@pytest.mark.parametrize("forced", ALL_ENGINES)
def test_environment_variable_forces_the_engine(forced, engine):
    if engine != "blas":
        pytest.skip("checked once")
    if forced not in ENGINES:
        pytest.skip(f"this CPU cannot run the {forced!r} kNN engine")
    code = (IMPORT + "import numpy as np\n"
            "rng = np.random.default_rng(0)\n"
            "Q = rng.standard_normal((20, 40)).astype(np.float32)\n"
            "D = rng.standard_normal((300, 40)).astype(np.float32)\n"
            "s, i = m.knn(Q, D, 5)\n"
            "S = Q.astype(np.float64) @ D.T.astype(np.float64)\n"
            "ok = (i == np.argsort(-S, axis=1, kind='stable')[:, :5]).all()\n"
            "print(m.ENGINE, ok)")
    result = _python(code, MINIVEC2VEC_KNN_ENGINE=forced)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [forced, "True"]


@pytest.mark.parametrize("bad", ["gpu", "INT8", "avx2"])
def test_bad_environment_engine_fails_naming_the_allowed_values(bad, engine):
    if engine != "blas":
        pytest.skip("checked once")
    result = _python("import minivec2vec.kernels.knn", MINIVEC2VEC_KNN_ENGINE=bad)
    assert result.returncode != 0
    assert "MINIVEC2VEC_KNN_ENGINE" in result.stderr and repr(bad) in result.stderr
    assert "'int8', 'int8-avx2', 'blas'" in result.stderr


def test_engine_the_cpu_cannot_run_raises(rng, monkeypatch, engine):
    if engine != "blas":
        pytest.skip("checked once")
    monkeypatch.setitem(knn_module._ENGINE_NEEDS, "int8-avx2", ("AVX2 + FMA", lambda: False))
    Q = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="int8-avx2.*needs a CPU with AVX2"):
        knn(Q, Q, 1, engine="int8-avx2")


# ------------------------------------------------------------------------------------ adversarial
def _assert_exact(scores, indices, S, k, atol):
    """Scores to float32 rounding of the float64 oracle S, indices the oracle's except where
    two candidates are a float32 rounding apart."""
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    np.testing.assert_allclose(scores, np.take_along_axis(S, order, axis=1), rtol=0, atol=atol)
    np.testing.assert_allclose(scores, np.take_along_axis(S, indices, axis=1), rtol=0, atol=atol)
    differ = indices != order
    gap = np.abs(np.take_along_axis(S, indices, axis=1) - np.take_along_axis(S, order, axis=1))
    assert np.all(gap[differ] <= atol), "an index differs from brute force outside a near-tie"
    for row in indices:
        assert len(np.unique(row)) == k


@pytest.mark.parametrize("d", [1, 3, 31, 33, 63, 65, 100, 384, 385])
def test_odd_dimensions_equal_brute_force(rng, d, engine):
    """d not a multiple of the 4-feature groups, the 8/16-lane steps or 32/64: padding codes
    and masked tails must add exactly nothing."""
    Q = rng.standard_normal((45, d)).astype(np.float32)
    D = rng.standard_normal((777, d)).astype(np.float32)
    k = 9
    scores, indices = knn(Q, D, k, engine=engine)
    assert_matches_brute_force(scores, indices, Q, D, k, "ip", atol=2e-5 * np.sqrt(d),
                               max_differ=0.02)


@pytest.mark.parametrize("d", [384, 388, 389])
def test_every_code_at_its_extreme_equals_brute_force(rng, d, engine):
    """Rows of +-1 only: every query and database code is at its extreme, so the integer
    products reach their largest sums (the AVX2 kernel adds the vpmaddubsw results of two
    feature groups in int16: at most 4 x 63 x 127 = 32,004 < 32,767). Even and odd numbers of
    4-feature groups. The scores are integers: the top-k is the oracle's bit for bit."""
    Q = rng.choice([-1.0, 1.0], size=(40, d)).astype(np.float32)
    D = rng.choice([-1.0, 1.0], size=(2000, d)).astype(np.float32)
    Q[0], D[0], D[1] = 1.0, 1.0, -1.0        # the largest and the smallest score there is
    D[2:200] = Q[rng.integers(0, 40, size=198)] * np.where(rng.random((198, d)) < 0.05, -1, 1)
    k = 16
    scores, indices = knn(Q, D, k, engine=engine)
    S = Q.astype(np.float64) @ D.T.astype(np.float64)
    _assert_exact(scores, indices, S, k, atol=0.0)
    assert scores[0, 0] == d


@pytest.mark.parametrize("k", [1, 63, 64, 65, 129, 130])
def test_k_near_n_equals_brute_force(rng, k, engine):
    """k close to (or equal to) n: nearly every row enters the heap, padding rows never do."""
    Q = rng.standard_normal((13, 24)).astype(np.float32)
    D = rng.standard_normal((130, 24)).astype(np.float32)
    scores, indices = knn(Q, D, k, engine=engine)
    assert_matches_brute_force(scores, indices, Q, D, k, "ip", atol=1e-4)
    if k == 130:
        np.testing.assert_array_equal(np.sort(indices, axis=1), np.tile(np.arange(130), (13, 1)))


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1.0, 1e12, 1e30])
def test_tiny_and_large_values_equal_brute_force(rng, scale, engine):
    Q = (rng.standard_normal((30, 37)) * np.sqrt(scale)).astype(np.float32)
    D = (rng.standard_normal((600, 37)) * np.sqrt(scale)).astype(np.float32)
    scores, indices = knn(Q, D, 7, engine=engine)
    S = Q.astype(np.float64) @ D.T.astype(np.float64)
    _assert_exact(scores, indices, S, 7, atol=1e-5 * scale)


def test_rows_of_very_different_norms(rng, engine):
    """Norms spread over 12 orders of magnitude within every 64-row panel: a panel's bound
    follows its largest row, and huge rows must not hide small rows' exact order."""
    d = 48
    D = rng.standard_normal((3000, d)) * 10.0 ** rng.uniform(-6, 6, size=(3000, 1))
    Q = rng.standard_normal((60, d)) * 10.0 ** rng.uniform(-3, 3, size=(60, 1))
    Q, D = Q.astype(np.float32), D.astype(np.float32)
    S = Q.astype(np.float64) @ D.T.astype(np.float64)
    scores, indices = knn(Q, D, 25, engine=engine)
    atol = 1e-6 * np.abs(Q).sum(1, keepdims=True) * np.abs(D).max() * d
    order = np.argsort(-S, axis=1, kind="stable")[:, :25]
    ref = np.take_along_axis(S, order, axis=1)
    assert np.all(np.abs(scores - ref) <= atol)
    gap = np.abs(np.take_along_axis(S, indices, axis=1) - ref)
    assert np.all(gap[indices != order] <= np.broadcast_to(atol, gap.shape)[indices != order])
    # and the same rows with the panels sorted by norm: small-norm panels against a huge root
    by_norm = np.argsort(np.linalg.norm(D, axis=1))
    s2, i2 = knn(Q, D[by_norm], 25, engine=engine)
    assert np.all(np.abs(s2 - ref) <= atol)
    gap2 = np.abs(np.take_along_axis(S, by_norm[i2], axis=1) - ref)
    assert np.all(gap2 <= np.broadcast_to(atol, gap2.shape))


def test_many_near_ties_equal_brute_force_bit_for_bit(rng, engine):
    """Rows that are one float32 rounding apart in score (copies nudged by an ulp) and exact
    copies spread over panels: ties by the lower index, the exact float32 order kept."""
    d = 96
    base = rng.standard_normal(d).astype(np.float32)
    D = rng.standard_normal((4000, d)).astype(np.float32) * 0.01
    spots = rng.choice(4000, size=400, replace=False)
    D[spots] = base
    nudge = spots[::2]
    D[nudge, rng.integers(0, d, size=nudge.size)] = np.nextafter(
        D[nudge, 0], np.float32(np.inf))  # a feature moves by one ulp of base[0]
    Q = np.stack([base, base * 2, -base, base + 1e-3]).astype(np.float32)
    k = 300
    scores, indices = knn(Q, D, k, engine=engine)
    S = Q.astype(np.float64) @ D.T.astype(np.float64)
    _assert_exact(scores, indices, S, k, atol=2e-5 * float(np.abs(S).max()))
    # integer-valued rows: exact arithmetic in float32, so the oracle holds bit for bit
    Qi = integer_data(rng, 50, 70, -8, 9)
    Di = integer_data(rng, 2500, 70, -8, 9)
    si, ii = knn(Qi, Di, 40, engine=engine)
    ref_s, ref_i, _ = brute_force(Qi, Di, 40, "ip")
    np.testing.assert_array_equal(ii, ref_i)
    np.testing.assert_array_equal(si, ref_s.astype(np.float32))


@pytest.mark.parametrize("bias_scale", [1e-6, 1.0, 1e3])
def test_bias_exact_on_integer_data(rng, bias_scale, engine):
    """Integer rows and biases: every score is exact in float32, the tie order is the oracle's."""
    Q = integer_data(rng, 80, 37, -4, 5)
    D = integer_data(rng, 3000, 37, -4, 5)
    bias = (rng.integers(-20, 21, size=3000) * bias_scale).astype(np.float32)
    S = Q.astype(np.float64) @ D.T.astype(np.float64) + bias.astype(np.float64)
    scores, indices = knn_module._knn(Q, D, 15, "ip", bias=bias, engine=engine)
    order = np.argsort(-S, axis=1, kind="stable")[:, :15]
    exact_in_float32 = bias_scale >= 1.0
    if exact_in_float32:
        np.testing.assert_array_equal(indices, order)
        np.testing.assert_array_equal(scores, np.take_along_axis(S, order, axis=1))
    else:
        _assert_exact(scores, indices, S, 15, atol=1e-5)


def test_int8_engines_agree_with_each_other(rng, engine):
    """Both int8 kernels screen the same packed database: the same neighbours everywhere."""
    if engine != "int8" or "int8-avx2" not in ENGINES:
        pytest.skip("needs both int8 engines")
    Q = rng.standard_normal((500, 384)).astype(np.float32)
    D = rng.standard_normal((6000, 384)).astype(np.float32)
    s_a, i_a = knn(Q, D, 50, engine="int8")
    s_b, i_b = knn(Q, D, 50, engine="int8-avx2")
    assert (i_a != i_b).mean() < 1e-3
    np.testing.assert_allclose(s_a, s_b, rtol=0, atol=2e-5)


def test_unknown_metric_raises(rng):
    D = rng.standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="metric"):
        knn(D, D, 1, metric="l2")


def test_nan_in_database_raises_naming_the_row(rng):
    D = rng.standard_normal((10, 4)).astype(np.float32)
    D[7, 2] = np.nan
    with pytest.raises(ValueError, match="database: row 7"):
        knn(D[:3], D, 1)


# ------------------------------------------------------------------------------------ memory
class _TileSpy:
    """Stands in for the compiled module and records the width of every similarity tile."""

    def __init__(self, core):
        self._core = core
        self.widths = []

    def fold_tile(self, sim, offset, scores, indices):
        self.widths.append(sim.shape[1])
        return self._core.fold_tile(sim, offset, scores, indices)

    def __getattr__(self, name):
        return getattr(self._core, name)


@pytest.mark.parametrize("metric,dtype", [("ip", np.float32), ("cosine", np.float32),
                                          ("ip", np.float16)])
def test_small_memory_limit_gives_smaller_tiles_and_same_result(rng, monkeypatch, metric, dtype,
                                                                engine):
    if engine != "blas":
        pytest.skip("similarity tiles exist only in the BLAS engine")
    Q = rng.standard_normal((300, 32)).astype(dtype)
    D = rng.standard_normal((5000, 32)).astype(dtype)
    spy = _TileSpy(knn_module._core)
    monkeypatch.setattr(knn_module, "_core", spy)
    ref_scores, ref_indices = knn(Q, D, 7, metric=metric)
    assert max(spy.widths) == knn_module.DATABASE_TILE
    spy.widths.clear()
    scores, indices = knn(Q, D, 7, metric=metric, memory_limit="150kB")
    assert max(spy.widths) < knn_module.DATABASE_TILE, "memory_limit did not shrink the tiles"
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-6)
    assert_matches_brute_force(scores, indices, Q, D, 7, metric,
                               atol=1e-4 if metric == "ip" else 2e-6)


class _ChunkSpy:
    """Stands in for the compiled module and records the rows of every packed int8 chunk."""

    def __init__(self, core):
        self._core = core
        self.chunks = []

    def Int8Database(self, rows, bias=None):
        self.chunks.append(rows.shape[0])
        return self._core.Int8Database(rows, bias)

    def __getattr__(self, name):
        return getattr(self._core, name)


@pytest.mark.parametrize("metric,dtype", [("ip", np.float32), ("cosine", np.float32),
                                          ("ip", np.float16)])
def test_small_memory_limit_gives_smaller_int8_chunks_and_same_result(rng, monkeypatch, metric,
                                                                      dtype, engine):
    if engine == "blas":
        pytest.skip("database chunks exist only in the int8 engines")
    Q = rng.standard_normal((300, 32)).astype(dtype)
    D = rng.standard_normal((5000, 32)).astype(dtype)
    spy = _ChunkSpy(knn_module._core)
    monkeypatch.setattr(knn_module, "_core", spy)
    ref_scores, ref_indices = knn(Q, D, 7, metric=metric)
    assert spy.chunks == [5000]
    spy.chunks.clear()
    scores, indices = knn(Q, D, 7, metric=metric, memory_limit="250kB")
    assert len(spy.chunks) > 1 and sum(spy.chunks) == 5000, spy.chunks
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(scores, ref_scores)
    assert_matches_brute_force(scores, indices, Q, D, 7, metric,
                               atol=1e-4 if metric == "ip" else 2e-6)


@pytest.mark.parametrize("limit", [1000, "1KB", 64 * 1024])
def test_memory_limit_too_small_raises_memory_error(rng, limit):
    Q = rng.standard_normal((2000, 32)).astype(np.float32)
    D = rng.standard_normal((3000, 32)).astype(np.float32)
    with pytest.raises(MemoryError, match="memory_limit"):
        knn(Q, D, 10, memory_limit=limit)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("memory_limit", [None, 100_000])
@pytest.mark.parametrize("as_view", [False, True])
def test_knn_does_not_modify_its_inputs(rng, metric, memory_limit, as_view):
    """knn must never write into the caller's arrays (a 100 kB budget drops the database copy,
    so cosine then normalises tile by tile)."""
    big = rng.standard_normal((3000, 16)).astype(np.float32)
    D = big[500:] if as_view else big[500:].copy()
    Q = rng.standard_normal((10, 16)).astype(np.float32)
    D_before, Q_before = D.copy(), Q.copy()
    scores, indices = knn(Q, D, 5, metric=metric, memory_limit=memory_limit)
    np.testing.assert_array_equal(Q, Q_before)
    np.testing.assert_array_equal(D, D_before, err_msg="knn modified the database in place")
    assert_matches_brute_force(scores, indices, Q, D_before, 5, metric,
                               atol=1e-4 if metric == "ip" else 2e-6)


def test_knn_cosine_with_memory_limit_on_read_only_memmap(rng, tmp_path):
    """A float32 .npy opened with mmap_mode='r' (the way large databases are passed) must be
    searchable under a memory limit that rules out a normalised copy."""
    path = tmp_path / "db.npy"
    np.save(path, rng.standard_normal((3000, 16)).astype(np.float32))
    D = np.load(path, mmap_mode="r")
    Q = rng.standard_normal((10, 16)).astype(np.float32)
    scores, indices = knn(Q, D, 5, metric="cosine", memory_limit=100_000)
    assert_matches_brute_force(scores, indices, Q, np.load(path), 5, "cosine", atol=2e-6)


@pytest.mark.parametrize("layout", ["strided_columns", "fortran", "strided_rows"])
@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("memory_limit", [None, 100_000])
def test_knn_non_contiguous_database(rng, layout, metric, memory_limit):
    base = rng.standard_normal((3000, 40)).astype(np.float32)
    D = {"strided_columns": base[:, ::2], "fortran": np.asfortranarray(base[:, :20]),
         "strided_rows": base[::2, :20]}[layout]
    assert not D.flags.c_contiguous
    Q = rng.standard_normal((50, 20)).astype(np.float32)
    scores, indices = knn(Q, D, 5, metric=metric, memory_limit=memory_limit)
    assert_matches_brute_force(scores, indices, Q, D, 5, metric,
                               atol=1e-4 if metric == "ip" else 2e-6)


# ------------------------------------------------------------------------------------ merge
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_merge_topk_of_two_halves_equals_knn_on_whole_database(rng, metric):
    Q = rng.standard_normal((123, 24)).astype(np.float32)
    D = rng.standard_normal((3001, 24)).astype(np.float32)
    # duplicates straddling the halves: the merge must break their ties by the lower index
    D[[2500, 40]] = D[1000]
    Q[0] = D[1000]
    h = 1300
    k = 12
    s1, i1 = knn(Q, D[:h], k, metric=metric)
    s2, i2 = knn(Q, D[h:], k, metric=metric)
    s, i = merge_topk(s1, i1, s2, i2 + h)
    ref_s, ref_i = knn(Q, D, k, metric=metric)
    np.testing.assert_array_equal(i, ref_i)
    # a row's dot products may round differently (1 ulp) in tiles at different offsets
    np.testing.assert_allclose(s, ref_s, rtol=1e-6, atol=1e-6)
    assert list(i[0, :3]) == [40, 1000, 2500]
    # commutative
    s_c, i_c = merge_topk(s2, i2 + h, s1, i1)
    np.testing.assert_array_equal(i_c, i)
    np.testing.assert_array_equal(s_c, s)


def test_merge_topk_exact_on_integer_data(rng):
    Q = integer_data(rng, 64, 5)
    D = integer_data(rng, 2000, 5)
    k = 20
    parts = [(0, 700), (700, 1500), (1500, 2000)]
    results = [knn(Q, D[a:b], k) for a, b in parts]
    s, i = results[0]
    for (a, _), (s_p, i_p) in zip(parts[1:], results[1:]):
        s, i = merge_topk(s, i, s_p, i_p + a)
    ref_s, ref_i, _ = brute_force(Q, D, k, "ip")
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_array_equal(s, ref_s.astype(np.float32))


def test_merge_topk_shape_mismatch_raises(rng):
    s = np.zeros((3, 4), dtype=np.float32)
    i = np.zeros((3, 4), dtype=np.int64)
    with pytest.raises(ShapeError, match=r"same shape \(n_queries, k\).*scores_b': \(3, 3\)"):
        merge_topk(s, i, s[:, :3], i[:, :3])
    with pytest.raises(ShapeError, match="indices_a must be 2-D"):
        merge_topk(s, i[0], s, i)


# ------------------------------------------------------------------------------------ threads
@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("memory_limit", [None, "1MB"])
def test_knn_thread_invariant(minilm, metric, memory_limit):
    Q = minilm[4000:4700]
    D = minilm[:4000]
    s1, i1 = knn(Q, D, 9, metric=metric, n_threads=1, memory_limit=memory_limit)
    s2, i2 = knn(Q, D, 9, metric=metric, n_threads=2, memory_limit=memory_limit)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    assert s1.tobytes() == s2.tobytes()


def test_knn_accepts_unpickled_float32_arrays(rng):
    """Arrays that crossed a process boundary (Dask workers) carry an equal but distinct
    float32 dtype object: the kernels must take them as float32, not reject or copy them."""
    import pickle
    Q = rng.standard_normal((40, 24)).astype(np.float32)
    D = pickle.loads(pickle.dumps(rng.standard_normal((500, 24)).astype(np.float32)))
    assert D.dtype is not np.dtype(np.float32)
    scores, indices = knn(pickle.loads(pickle.dumps(Q)), D, 5)
    assert_matches_brute_force(scores, indices, Q, D, 5, "ip", atol=1e-4)


# ------------------------------------------------------------------------------------ row bias
@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("k", [1, 10])
@pytest.mark.parametrize("memory_limit", [None, "300kB"])
@pytest.mark.parametrize("prepared", [False, True])
def test_bias_equals_brute_force(rng, metric, k, memory_limit, prepared):
    """score(q, j) = similarity(q, x_j) + bias[j]: the same exact top-k as brute force, with
    biases large enough to reorder the rows (and through the int8 chunks of a memory limit)."""
    Q = rng.standard_normal((200, 48)).astype(np.float32)
    D = rng.standard_normal((3000, 48)).astype(np.float32)
    bias = (rng.standard_normal(3000) * (3.0 if metric == "ip" else 0.2)).astype(np.float32)
    S = similarity(Q, D, metric) + bias
    order = np.argsort(-S, axis=1, kind="stable")[:, :k]
    database = knn_module.PreparedDatabase(D, metric, bias=bias) if prepared else D
    scores, indices = knn_module._knn(Q, database, k, metric,
                                      memory_limit=None if prepared else memory_limit,
                                      bias=None if prepared else bias)
    np.testing.assert_allclose(scores, np.take_along_axis(S, order, axis=1), rtol=0, atol=1e-4)
    differ = indices != order
    gap = np.abs(np.take_along_axis(S, indices, axis=1) - np.take_along_axis(S, order, axis=1))
    assert differ.mean() <= 0.01 and np.all(gap[differ] <= 1e-4)


def test_bias_nearest_center_is_kmeans_assignment(rng):
    """With bias -|c|^2 / 2 the top-1 row is the nearest center in Euclidean distance."""
    X = rng.standard_normal((1000, 40)).astype(np.float32)
    C = rng.standard_normal((70, 40)).astype(np.float32)
    _, indices = knn_module._knn(X, C, 1, bias=-0.5 * np.einsum("ij,ij->i", C, C))
    distances = ((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(indices[:, 0], distances.argmin(axis=1))


def test_bias_of_wrong_shape_raises(rng):
    D = rng.standard_normal((50, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"bias: expected shape \(50,\)"):
        knn_module._knn(D, D, 1, bias=np.zeros(49, dtype=np.float32))
    with pytest.raises(ValueError, match="carries its own bias"):
        knn_module._knn(D, knn_module.PreparedDatabase(D), 1, bias=np.zeros(50, np.float32))


def test_csls_nearest_equals_dense_oracle(rng):
    """Both directions of csls_nearest against the CSLS matrix written out in full."""
    Q = knn_module.normalise_rows(rng.standard_normal((400, 32)).astype(np.float32))
    D = knn_module.normalise_rows(rng.standard_normal((600, 32)).astype(np.float32))
    S = Q.astype(np.float64) @ D.T.astype(np.float64)
    k = 10
    r_q = np.sort(S, axis=1)[:, -k:].mean(axis=1)
    r_d = np.sort(S, axis=0)[-k:, :].mean(axis=0)
    csls = 2 * S - r_q[:, None] - r_d[None, :]
    forward, backward = knn_module.csls_nearest(Q, D, k)
    np.testing.assert_array_equal(forward, csls.argmax(axis=1))
    np.testing.assert_array_equal(backward, csls.argmax(axis=0))
