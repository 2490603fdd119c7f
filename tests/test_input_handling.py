"""Small inputs, memory limits, output paths and input layouts.

* the minimum rows rule (50 rows per anchor cluster: 1,000 per side with the defaults) and the
  scale-down rule of every other size (minivec2vec/_runtime/sizing.py);
* a memory_limit too small for one block fails before the first stage;
* an unwritable output path fails before any work (save, CLI fit -o, CLI apply -o);
* strided, read-only, float16 and float64 inputs give the results of contiguous float32 ones,
  and no full-size copy of them is made (tracemalloc peaks).
"""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from scipy.stats import ortho_group

import minivec2vec.kernels.rows as rows_module
import minivec2vec.pipeline as pipeline_module
from minivec2vec import (AlignmentWarning, MemoryLimitError, MiniVec2Vec, OutputPathError,
                         TooFewRowsError, knn)
from minivec2vec._runtime.sizing import minimum_rows, stage_settings
from minivec2vec.cli import main
from minivec2vec.evaluation.protocol import Split, evaluate_model

# Light settings: the mechanics, not the quality, are under test (extra_restarts=0: these
# fits are doubtful, and five extra restarts would only repeat the mechanics under test).
LIGHT = dict(n_runs=3, qap_restarts=5, refine_iter=5, transport_iter=1, refine_clusters=20,
             mutual_iter=1, random_state=0, n_threads=1, extra_restarts=0)


def peak_bytes(function):
    """(result, peak bytes traced while function() runs, above what was allocated before)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = function()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return result, peak


def strided_read_only(X, dtype):
    """X's values in an array of ``dtype`` that is neither C- nor F-contiguous and read-only."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=dtype)
    wide[:, ::2] = X
    view = wide[:, ::2]
    view.setflags(write=False)
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    return view


# ------------------------------------------------------------------------------------ minimum rows
def test_minimum_is_1000_rows_with_defaults():
    assert minimum_rows(MiniVec2Vec().n_clusters) == 1000


@pytest.mark.parametrize("side", ["a", "b"])
def test_999_rows_give_a_clear_error(rotation_split, side):
    A, B = rotation_split.train_a[:1000], rotation_split.train_b[:1000]
    if side == "a":
        A = A[:999]
    else:
        B = B[:999]
    with pytest.raises(TooFewRowsError, match=rf"X_{side}: has 999 rows, too few: n_clusters=20 "
                                              r"anchor clusters need at least 1000 rows per side"):
        MiniVec2Vec().fit(A, B)


def test_fit_sample_below_the_minimum_is_named(rotation_split):
    with pytest.raises(TooFewRowsError, match="fit_sample=800 is too small"):
        MiniVec2Vec(fit_sample=800).fit(rotation_split.train_a, rotation_split.train_b)


def test_smaller_n_clusters_allows_fewer_rows(rotation_split):
    A, B = rotation_split.train_a[:500], rotation_split.train_b[:500]
    with pytest.raises(TooFewRowsError):
        MiniVec2Vec(**LIGHT).fit(A, B)
    model = MiniVec2Vec(n_clusters=10, **LIGHT).fit(A, B)
    assert model.W_.shape == (384, 384)
    assert model.stage_settings_ == {"n_clusters": 10, "anchor_sample": 500, "n_neighbors": 25,
                                     "refine_sample": 500, "refine_neighbors": 25,
                                     "transport_iter": 1, "assignment_iter": 0,
                                     "assignment_rows": 500, "refine_clusters": 20, "mutual_sample": 500,
        "mutual_final_sample": 500, "csls_k": 5}


def test_scale_down_rule():
    defaults = MiniVec2Vec().get_params()
    assert stage_settings(defaults, 100_000, 30_000) == {
        "n_clusters": 20, "anchor_sample": 10000, "n_neighbors": 50, "refine_sample": 1000,
        "refine_neighbors": 50, "transport_iter": 0, "assignment_iter": 1000,
        "assignment_rows": 2000, "refine_clusters": 500,
        "mutual_sample": 10000, "mutual_final_sample": 30000, "csls_k": 10}
    # from 2000 rows per side the defaults are untouched but the samples
    assert stage_settings(defaults, 2000, 5000) == {
        "n_clusters": 20, "anchor_sample": 2000, "n_neighbors": 50, "refine_sample": 1000,
        "refine_neighbors": 50, "transport_iter": 0, "assignment_iter": 0,
        "assignment_rows": 2000, "refine_clusters": 500,
        "mutual_sample": 2000, "mutual_final_sample": 2000, "csls_k": 10}
    # at the minimum: k <= n // 20, refine_clusters <= n // 4, csls_k <= n // 100
    assert stage_settings(defaults, 1000, 1200) == {
        "n_clusters": 20, "anchor_sample": 1000, "n_neighbors": 50, "refine_sample": 1000,
        "refine_neighbors": 50, "transport_iter": 200, "assignment_iter": 0,
        "assignment_rows": 1000, "refine_clusters": 250, "mutual_sample": 1000, "mutual_final_sample": 1000, "csls_k": 10}
    small = dict(defaults, n_clusters=3)
    assert stage_settings(small, 150, 150) == {
        "n_clusters": 3, "anchor_sample": 150, "n_neighbors": 7, "refine_sample": 150,
        "refine_neighbors": 7, "transport_iter": 200, "assignment_iter": 0,
        "assignment_rows": 150, "refine_clusters": 37,
        "mutual_sample": 150, "mutual_final_sample": 150, "csls_k": 1}


# Top-1 of default settings on 1,000 rows per side of the shipped rotation split (minilm vs
# rotated minilm, disjoint texts, pool 1000); chance is 0.001. Measured 0.093 before
# refine-transport (the nearest-neighbour refinements stopped at partial maps: 0.06-0.62 over
# 20 seeds with one restart), with it (2026-12-02) seeds 0-5: 0.982, 0.994, 0.996, 0.801,
# 0.996, 0.994 with OpenBLAS's AVX-512 kernels and 0.824, 0.998, 0.997, 0.984, 0.996, 0.998
# with its Haswell kernels (OPENBLAS_CORETYPE=Haswell). At this size about one seed in six
# still stops at a partial map near 0.8, and which seed does depends on the BLAS's rounding, so
# one seed's result is not a property of the code: the test takes three seeds and asserts the
# median, and that no seed falls below the partial-map level. The restarts' agreement also
# straddles its warning threshold at this size (0.33-0.70), so the warning is not asserted.
MIN_ROWS_TOP1_FLOOR = 0.95       # the median of seeds 0-2
MIN_ROWS_TOP1_WORST = 0.75       # every seed: a partial map at worst, not a failure


def test_defaults_run_at_1000_rows_per_side(rotation_split):
    s = rotation_split
    small = Split(train_a=s.train_a[:1000], train_b=s.train_b[:1000], test_a=s.test_a,
                  test_b=s.test_b, paired_train_b=s.paired_train_b[:1000])
    top1 = []
    for seed in (0, 1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlignmentWarning)
            model = MiniVec2Vec(random_state=seed, n_threads=2).fit(small.train_a, small.train_b)
        assert model.stage_settings_["refine_clusters"] == 250
        assert model.stage_settings_["transport_iter"] == 200
        top1.append(evaluate_model(model, small)["top1"])
    assert sorted(top1)[1] >= MIN_ROWS_TOP1_FLOOR, top1
    assert min(top1) >= MIN_ROWS_TOP1_WORST, top1


# ------------------------------------------------------------------------------------ memory limit
def test_fit_memory_limit_too_small_fails_before_the_first_stage(rotation_split, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the anchor stage ran although the memory plan cannot fit")

    monkeypatch.setattr(pipeline_module, "match_anchors", must_not_run)
    with pytest.raises(MemoryLimitError, match=r"memory_limit=20000 bytes is too small for fit"):
        MiniVec2Vec(memory_limit=20_000, **LIGHT).fit(rotation_split.train_a[:1000],
                                                      rotation_split.train_b[:1000])
    with pytest.raises(MemoryError):           # still a MemoryError for existing handlers
        MiniVec2Vec(memory_limit="20kB", **LIGHT).fit(rotation_split.train_a[:1000],
                                                      rotation_split.train_b[:1000])


def test_fit_runs_under_a_small_but_sufficient_memory_limit(rotation_split):
    A, B = rotation_split.train_a[:1000], rotation_split.train_b[:1000]
    free = MiniVec2Vec(**LIGHT).fit(A, B)
    # the limit counts the process: 300 MB are reserved for Python and the libraries
    bounded = MiniVec2Vec(memory_limit="400MB", **LIGHT).fit(A, B)
    # smaller tiles may round differently in the last bit, and a near-tie may flip a neighbour
    np.testing.assert_allclose(bounded.W_, free.W_, atol=1e-3)


def test_refine_transport_plan_that_cannot_fit_is_refused_before_the_first_stage():
    """Refine-transport holds a transport_rows x transport_rows plan: 3,000 rows per side with
    transport_rows=3000 need 64 MB for it, which 50 MB above the fixed overhead cannot hold."""
    from minivec2vec._runtime.memory import FIXED_OVERHEAD
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3000, 384)).astype(np.float32)
    B = rng.standard_normal((3000, 384)).astype(np.float32)
    with pytest.raises(MemoryLimitError, match="too small for refine-transport: its plan needs"):
        MiniVec2Vec(transport_rows=3000, memory_limit=FIXED_OVERHEAD + 50 * 10**6,
                    **LIGHT).fit(A, B)


# ------------------------------------------------------------------------------------ output paths
def test_cli_fit_refuses_an_unwritable_output_before_fitting(tmp_path, monkeypatch, capsys,
                                                             minilm):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, minilm[:1000])
    np.save(b, minilm[1000:2000])

    def must_not_fit(self, *args):
        raise AssertionError("fit ran although the output cannot be written")

    monkeypatch.setattr(MiniVec2Vec, "fit", must_not_fit)
    assert main(["fit", str(a), str(b), "-o", str(tmp_path / "missing" / "m.map")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minivec2vec: error: output: cannot write") and "does not exist" in err
    assert main(["fit", str(a), str(b), "-o", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "b.npy"]


def test_cli_apply_refuses_an_unwritable_output(tmp_path, capsys):
    model = MiniVec2Vec()
    model.W_ = ortho_group.rvs(8, random_state=0)
    model.mean_a_ = model.mean_b_ = np.zeros(8)
    model.anchors_a_ = model.anchors_b_ = np.eye(8, dtype=np.float32)
    model.anchor_scores_ = np.ones(1)
    model.scale_b_, model.timings_, model.n_features_a_, model.n_features_b_ = 1.0, {}, 8, 8
    model.save(tmp_path / "m.map")
    X = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert main(["apply", str(tmp_path / "m.map"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "nope" / "out.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "out.npy").mkdir()
    assert main(["apply", str(tmp_path / "m.map"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "out.npy")]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.map", "out.npy", "x.npy"]
    assert main(["apply", str(tmp_path / "m.map"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "ok.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "ok.npy"), model.transform(X), atol=1e-6)
    assert issubclass(OutputPathError, OSError)


# ------------------------------------------------------------------------------------ layouts, copies
@pytest.fixture(scope="module")
def mapped_model(rotation_split):
    return MiniVec2Vec(**LIGHT).fit(rotation_split.train_a[:1000], rotation_split.train_b[:1000])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_transform_of_strided_read_only_input_needs_no_copy(mapped_model, minilm, dtype,
                                                            monkeypatch):
    X = np.tile(minilm, (2, 1))[:8000]
    reference = mapped_model.transform(np.ascontiguousarray(X, dtype=np.float32))
    view = strided_read_only(X, dtype)
    monkeypatch.setattr(rows_module, "_BLOCK_ROWS", 500)
    out, peak = peak_bytes(lambda: mapped_model.transform(view))
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)
    output_bytes = out.nbytes
    block_bytes = 500 * 384 * 8 * 3          # a block's float32 copy and temporaries, generously
    assert peak <= output_bytes + block_bytes, (peak, output_bytes)
    assert peak < output_bytes + view.shape[0] * view.shape[1] * 4 / 2   # never a full copy


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_knn_on_strided_read_only_database_stays_within_memory_limit(minilm, dtype):
    D = strided_read_only(np.tile(minilm, (2, 1)), dtype)       # 10,000 x 384
    Q = strided_read_only(minilm[:300], dtype)
    expected = knn(np.ascontiguousarray(Q, dtype=np.float32),
                   np.ascontiguousarray(D, dtype=np.float32), 5, metric="cosine")
    limit = 4_000_000                                           # 1/4 of a float32 copy of D
    (scores, indices), peak = peak_bytes(lambda: knn(Q, D, 5, metric="cosine",
                                                     memory_limit=limit))
    # D holds every sample row twice (i and i + 5000): the same vector, whose two copies the
    # BLAS engine may score a rounding apart in tiles of other shapes, so the oracle is the
    # vector found, not which copy
    n = minilm.shape[0]
    np.testing.assert_array_equal(indices[:, 0] % n, expected[1][:, 0] % n)
    np.testing.assert_allclose(scores, expected[0], atol=2e-6)
    assert peak <= limit, (peak, limit)


def test_fit_on_strided_float64_read_only_makes_no_extra_copy(rotation_split):
    A32 = np.ascontiguousarray(rotation_split.train_a[:1500], dtype=np.float32)
    B32 = np.ascontiguousarray(rotation_split.train_b[:1500], dtype=np.float32)
    settings = dict(LIGHT, refine_iter=2, mutual_iter=0, refine_clusters=0)
    plain, peak_plain = peak_bytes(lambda: MiniVec2Vec(**settings).fit(A32, B32))
    A64, B64 = strided_read_only(A32, np.float64), strided_read_only(B32, np.float64)
    strided, peak_strided = peak_bytes(lambda: MiniVec2Vec(**settings).fit(A64, B64))
    np.testing.assert_allclose(strided.W_, plain.W_, atol=1e-4)
    # a silent float64 (or float32) copy of one input would add at least A32.nbytes
    assert peak_strided - peak_plain < A32.nbytes / 2, (peak_strided, peak_plain)


def test_cli_apply_refuses_bad_map_and_pickled_input_leaving_nothing(tmp_path, capsys):
    bad_map = tmp_path / "bad.map"
    bad_map.write_bytes(b"PK\x03\x04 truncated")
    X = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    assert main(["apply", str(bad_map), str(tmp_path / "x.npy"), "-o", str(tmp_path / "o.npy")]) == 2
    assert "not a minivec2vec map file" in capsys.readouterr().err
    model = MiniVec2Vec()
    model.W_ = np.eye(8)
    model.mean_a_ = model.mean_b_ = np.zeros(8)
    model.anchors_a_ = model.anchors_b_ = np.eye(8, dtype=np.float32)
    model.anchor_scores_ = np.ones(1)
    model.scale_b_, model.timings_, model.n_features_a_, model.n_features_b_ = 1.0, {}, 8, 8
    model.save(tmp_path / "m.map")
    evil = np.empty((5, 8), dtype=object)
    np.save(tmp_path / "evil.npy", evil, allow_pickle=True)
    assert main(["apply", str(tmp_path / "m.map"), str(tmp_path / "evil.npy"), "-o",
                 str(tmp_path / "o.npy")]) == 2
    assert "holds dtype object" in capsys.readouterr().err   # refused from its header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.map", "evil.npy", "m.map", "x.npy"]
