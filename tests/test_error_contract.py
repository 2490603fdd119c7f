"""The error contract and the fixes found by review.

* apply_map keeps its resumable partial output after an I/O-type failure (an input file
  truncated while it is read) and removes it only for bad rows;
* a map file keeps ``stage_settings_`` and ``restart_confidences_``, and older map files
  without them still load;
* Dask fits refuse all-zero rows as in-memory fits do;
* CLI flags are validated before any work: one line on stderr, exit status 2.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from scipy.stats import ortho_group

from minivec2vec import MiniVec2Vec, MiniVec2VecError, NonFiniteError, ZeroRowError
from minivec2vec.cli import main
from minivec2vec.io.etl import apply_map

LIGHT = dict(n_runs=3, qap_restarts=5, refine_iter=5, transport_iter=1, refine_clusters=20,
             mutual_iter=1, random_state=0, n_threads=1)


def small_model(d=8):
    model = MiniVec2Vec()
    model.W_ = ortho_group.rvs(d, random_state=0)
    model.mean_a_ = model.mean_b_ = np.zeros(d)
    model.anchors_a_ = model.anchors_b_ = np.eye(d, dtype=np.float32)
    model.anchor_scores_ = np.ones(1)
    model.scale_b_, model.timings_, model.n_features_a_, model.n_features_b_ = 1.0, {}, d, d
    return model


# ------------------------------------------------------------------------------------ apply_map
def test_apply_keeps_the_partial_output_when_the_input_is_truncated_while_read(tmp_path):
    model = small_model()
    X = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    path, out = tmp_path / "x.npy", tmp_path / "out.npy"
    np.save(path, X)
    whole = path.read_bytes()

    def truncate(n_chunks):
        if n_chunks == 1:
            with open(path, "r+b") as fh:
                fh.truncate(len(whole) - 40 * 8 * 4)

    with pytest.raises(ValueError, match="ended early"):
        apply_map(model, str(path), str(out), chunk_rows=20, progress=False,
                  _after_chunk=truncate)
    assert os.path.exists(str(out) + ".partial") and os.path.exists(str(out) + ".partial.json")
    assert not out.exists()
    path.write_bytes(whole)                 # the input is whole again (same size, new mtime)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
    apply_map(model, str(path), str(out), chunk_rows=20, progress=False)
    np.testing.assert_allclose(np.load(out), model.transform(X), atol=1e-6)


def test_apply_removes_the_partial_output_for_bad_rows(tmp_path):
    model = small_model()
    X = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    X[50] = np.nan
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "out.npy"
    with pytest.raises(NonFiniteError, match="row 50"):
        apply_map(model, str(tmp_path / "x.npy"), str(out), chunk_rows=20, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


# ------------------------------------------------------------------------------------ map file
def test_load_restores_stage_settings_and_restart_confidences(tmp_path, rotation_split):
    with pytest.warns(UserWarning):     # light settings: the alignment is doubtful
        model = MiniVec2Vec(**LIGHT).fit(rotation_split.train_a[:1000],
                                         rotation_split.train_b[:1000])
    assert len(model.restart_confidences_) >= 2 and model.stage_settings_
    model.save(tmp_path / "m.map")
    loaded = MiniVec2Vec.load(tmp_path / "m.map")
    assert loaded.stage_settings_ == model.stage_settings_
    np.testing.assert_array_equal(loaded.restart_confidences_, model.restart_confidences_)


def test_a_map_file_without_them_still_loads(tmp_path):
    small_model().save(tmp_path / "m.map")
    with zipfile.ZipFile(tmp_path / "m.map") as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    meta = json.loads(members["meta.json"])
    meta["extra"].pop("stage_settings_", None)
    meta["extra"].pop("restart_confidences_", None)
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(tmp_path / "old.map", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    loaded = MiniVec2Vec.load(tmp_path / "old.map")
    np.testing.assert_array_equal(loaded.W_, small_model().W_)


# ------------------------------------------------------------------------------------ dask
@pytest.mark.parametrize("dask_side", ["a", "b", "both"])
def test_dask_fit_refuses_all_zero_rows(rotation_split, dask_side):
    da = pytest.importorskip("dask.array")
    A = np.array(rotation_split.train_a[:1000], dtype=np.float32)
    B = np.array(rotation_split.train_b[:1000], dtype=np.float32)
    A[321] = 0.0
    inputs = [A, B]
    for i in {"a": [0], "b": [1], "both": [0, 1]}[dask_side]:
        inputs[i] = da.from_array(inputs[i], chunks=(300, inputs[i].shape[1]))
    with pytest.raises(ZeroRowError, match="X_a: row 321 is all zeros"):
        MiniVec2Vec(**LIGHT).fit(*inputs)


# ------------------------------------------------------------------------------------ CLI flags
@pytest.fixture
def cli_files(tmp_path):
    small_model().save(tmp_path / "m.map")
    X = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    return tmp_path


@pytest.mark.parametrize("flag,value", [("--n-threads", "-3"), ("--n-threads", "0"),
                                        ("--n-threads", "two"), ("--chunk-rows", "0"),
                                        ("--chunk-rows", "-5")])
def test_cli_apply_refuses_bad_counts_before_any_work(cli_files, capsys, flag, value):
    t = cli_files
    with pytest.raises(SystemExit) as exit_info:
        main(["apply", str(t / "m.map"), str(t / "x.npy"), "-o", str(t / "o.npy"), flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("minivec2vec: error: argument " + flag) and value in err
    assert not (t / "o.npy").exists() and not (t / "o.npy.partial").exists()


@pytest.mark.parametrize("argv", [
    ["evaluate", "m.map", "x.npy", "x.npy", "--n-threads", "-1"],
    ["evaluate", "m.map", "x.npy", "x.npy", "--pool", "0"],
    ["fit", "x.npy", "x.npy", "-o", "f.map", "--n-threads", "0"],
    ["fit", "x.npy", "x.npy", "-o", "f.map", "--n-runs", "-2"],
    ["demo", "--n-threads", "-4"],
    ["generate", "g", "--rows", "0", "--dim", "8"],
    ["generate", "g", "--rows", "10", "--dim", "8", "--shard-rows", "-1"],
])
def test_cli_refuses_zero_and_negative_counts_everywhere(cli_files, capsys, monkeypatch, argv):
    monkeypatch.chdir(cli_files)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("minivec2vec: error: argument")
    assert not (cli_files / "f.map").exists() and not (cli_files / "g").exists()


def test_cli_evaluate_passes_n_threads_to_its_knn(cli_files, capsys, monkeypatch):
    import minivec2vec.evaluation.metrics as evaluation_module
    seen = []
    real = evaluation_module._knn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("n_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "_knn", spy)
    t = cli_files
    assert main(["evaluate", str(t / "m.map"), str(t / "x.npy"), str(t / "x.npy"), "--csls",
                 "--n-threads", "1", "--json"]) == 0
    assert seen == [1]
    assert json.loads(capsys.readouterr().out)["pool"] == 20


# ------------------------------------------------------------------------------------ every refusal
def _bad_inputs(tmp):
    """(entry point, bad input) -> (call, expected MiniVec2VecError subclass, message pattern)."""
    import minivec2vec as m
    from minivec2vec.kernels import partials
    from minivec2vec._runtime.memory import working_budget
    from minivec2vec.io.sources import open_source, scan

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 8)).astype(np.float32)
    nan = X.copy()
    nan[4, 2] = np.nan
    inf = X.copy()
    inf[6, 1] = np.inf
    zero = X.copy()
    zero[3] = 0.0
    np.save(tmp / "x.npy", X)
    np.save(tmp / "nan.npy", nan)
    np.save(tmp / "int.npy", np.zeros((4, 8), dtype=np.int32))
    np.save(tmp / "cube.npy", np.zeros((2, 2, 2), dtype=np.float32))
    np.save(tmp / "wide.npy", np.zeros((4, 5), dtype=np.float32))
    (tmp / "junk.npy").write_bytes(b"not an array")
    (tmp / "empty").mkdir()
    full = (tmp / "x.npy").read_bytes()
    (tmp / "cut.npy").write_bytes(full[:len(full) - 64])
    (tmp / "bad.map").write_bytes(b"PK\x03\x04 truncated")
    model = small_model()
    model.save(tmp / "m.map")
    p = partials.procrustes_partial(X, X)
    one_sided = partials.procrustes_partial(X)
    cases = {
        "knn NaN": (lambda: m.knn(nan, X, 2), m.NonFiniteError, "queries: row 4"),
        "knn Inf": (lambda: m.knn(X, inf, 2), m.NonFiniteError, "database: row 6"),
        "knn 1-D": (lambda: m.knn(X[0], X, 2), m.ShapeError, "2-D"),
        "knn dtype": (lambda: m.knn(X.astype(np.int64), X, 2), m.DtypeError, "int64"),
        "knn dims": (lambda: m.knn(X, X[:, :5], 2), m.DimensionMismatchError, "5 features"),
        "knn k too large": (lambda: m.knn(X, X, 31), m.TooFewRowsError, "larger than"),
        "knn metric": (lambda: m.knn(X, X, 2, metric="l3"), m.InvalidParameterError, "metric"),
        "knn n_threads": (lambda: m.knn(X, X, 2, n_threads=-3), m.InvalidParameterError,
                          "n_threads"),
        "knn n_threads type": (lambda: m.knn(X, X, 2, n_threads="2"), m.ParameterTypeError,
                               "n_threads"),
        "knn memory_limit": (lambda: m.knn(X, X, 2, memory_limit="lots"),
                             m.InvalidParameterError, "memory_limit"),
        "kmeans too few rows": (lambda: m.kmeans(X, 40), m.TooFewRowsError, "n_clusters=40"),
        "kmeans NaN": (lambda: m.kmeans(nan, 3), m.NonFiniteError, "row 4"),
        "fit NaN": (lambda: MiniVec2Vec(**LIGHT).fit(nan, X), m.NonFiniteError, "X_a: row 4"),
        "fit zero row": (lambda: MiniVec2Vec(**LIGHT).fit(X, zero), m.ZeroRowError,
                         "X_b: row 3 is all zeros"),
        "fit too few rows": (lambda: MiniVec2Vec(**LIGHT).fit(X, X), m.TooFewRowsError,
                             "too few"),
        "fit 3-D": (lambda: MiniVec2Vec(**LIGHT).fit(np.zeros((2, 2, 2)), X), m.ShapeError,
                    "3-D"),
        "fit bad alpha": (lambda: MiniVec2Vec(alpha=2.0).fit(X, X), m.InvalidParameterError,
                          "alpha"),
        "fit bad count": (lambda: MiniVec2Vec(n_runs=0).fit(X, X), m.InvalidParameterError,
                          "n_runs"),
        "fit bad random_state": (lambda: MiniVec2Vec(random_state="x").fit(X, X),
                                 m.ParameterTypeError, "random_state"),
        "fit known_pairs": (lambda: MiniVec2Vec(**LIGHT).fit(X, X, known_pairs=X),
                            m.ParameterTypeError, "known_pairs"),
        "set_params": (lambda: MiniVec2Vec().set_params(speed=3), m.InvalidParameterError,
                       "unknown parameter"),
        "transform not fitted": (lambda: MiniVec2Vec().transform(X), m.NotFittedError,
                                 "not fitted"),
        "transform dims": (lambda: model.transform(X[:, :5]), m.DimensionMismatchError,
                           "5 features"),
        "transform NaN": (lambda: model.transform(nan), m.NonFiniteError, "row 4"),
        "load corrupt map": (lambda: MiniVec2Vec.load(tmp / "bad.map"), m.MapFileError,
                             "not a minivec2vec map file"),
        "load missing map": (lambda: MiniVec2Vec.load(tmp / "none.map"), m.PathNotFoundError,
                             "does not exist"),
        "save unwritable": (lambda: model.save(tmp / "no" / "m.map"),
                            m.OutputDirectoryNotFoundError, "does not exist"),
        "file missing": (lambda: open_source(str(tmp / "none.npy")), m.PathNotFoundError,
                         "no such file"),
        "file dtype": (lambda: open_source(str(tmp / "int.npy")), m.DtypeError, "int32"),
        "file 3-D": (lambda: open_source(str(tmp / "cube.npy")), m.ShapeError, "3-D"),
        "file not .npy": (lambda: open_source(str(tmp / "junk.npy")), m.InputFileError,
                          "not a readable .npy"),
        "file truncated": (lambda: open_source(str(tmp / "cut.npy")), m.InputFileError,
                           "truncated"),
        "shards mismatch": (lambda: open_source([str(tmp / "x.npy"), str(tmp / "wide.npy")]),
                            m.DimensionMismatchError, "5"),
        "empty directory": (lambda: open_source(tmp / "empty"), m.InputFileError,
                            "holds no .npy or .parquet"),
        "file NaN": (lambda: scan(open_source(str(tmp / "nan.npy")), 8192), m.NonFiniteError,
                     "row 4"),
        "apply missing directory": (
            lambda: apply_map(model, X, tmp / "no" / "o.npy", progress=False),
            m.OutputDirectoryNotFoundError, "does not exist"),
        "apply chunk_rows": (lambda: apply_map(model, X, tmp / "o.npy", chunk_rows=0,
                                               progress=False),
                             m.InvalidParameterError, "chunk_rows"),
        "apply chunk does not fit": (
            lambda: apply_map(model, X, tmp / "o.npy", chunk_rows=10**9, memory_limit="400MB",
                              progress=False),
            m.MemoryLimitError, "does not fit"),
        "apply corrupt map": (lambda: apply_map(str(tmp / "bad.map"), X, tmp / "o.npy",
                                                progress=False),
                              m.MapFileError, "not a minivec2vec map file"),
        "memory plan": (lambda: working_budget(10**6, "fit"), m.MemoryLimitError,
                        "too small"),
        "procrustes 1-D": (lambda: m.procrustes(np.ones(3)), m.ShapeError, "2-D"),
        "procrustes NaN": (lambda: m.procrustes(np.full((3, 3), np.nan)), m.NonFiniteError,
                           "NaN"),
        "partial unpaired rows": (lambda: partials.procrustes_partial(X, X[:10]), m.ShapeError,
                                  "paired"),
        "partial 1-D": (lambda: partials.procrustes_partial(X[0]), m.ShapeError, "2-D"),
        "partials merge mismatch": (lambda: partials.merge_procrustes_partials(p, one_sided),
                                    m.PartialStateError, "different data"),
        "partial not a partial": (lambda: partials.merge_procrustes_partials(p, None),
                                  m.PartialStateError, "ProcrustesPartial"),
        "partial no rows": (lambda: partials.partial_means(
            partials.ProcrustesPartial(sum_x=np.zeros(8), count=0)),
            m.PartialStateError, "no rows"),
        "partial unpaired finalize": (lambda: partials.finalize_procrustes(one_sided),
                                      m.PartialStateError, "no cross-covariance"),
        "topk_partial k": (lambda: partials.topk_partial(X, X, 0), m.InvalidParameterError,
                           "k must be >= 1"),
        "merge_topk shapes": (lambda: m.merge_topk(X[:, :4], np.zeros((30, 4), np.int64),
                                                   X[:, :3], np.zeros((30, 3), np.int64)),
                              m.ShapeError, "same shape"),
        "apply n_threads": (lambda: apply_map(model, X, tmp / "o.npy", n_threads=0,
                                                  progress=False),
                                m.InvalidParameterError, "n_threads"),
        "evaluate unpaired": (lambda: m.evaluate(X, X[:10]), m.ShapeError, "paired"),
        "evaluate pool": (lambda: m.evaluate(X, X, pool=0), m.InvalidParameterError, "pool"),
    }
    return cases


def test_every_refusal_is_a_minivec2vec_error_naming_the_problem(tmp_path):
    failures = []
    for name, (call, expected, pattern) in _bad_inputs(tmp_path).items():
        assert issubclass(expected, MiniVec2VecError), name
        try:
            call()
        except MiniVec2VecError as exc:
            if not isinstance(exc, expected) or pattern not in str(exc):
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
        except Exception as exc:       # a bare built-in: the contract is broken
            failures.append(f"{name}: bare {type(exc).__name__}: {exc}")
        else:
            failures.append(f"{name}: nothing was raised")
    assert not failures, "\n".join(failures)


def test_dask_refusals_are_minivec2vec_errors():
    da = pytest.importorskip("dask.array")
    from minivec2vec import (DtypeError, InvalidParameterError, ShapeError, TooFewRowsError,
                             dask_knn, dask_procrustes)
    X = da.from_array(np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32),
                      chunks=(10, 8))
    with pytest.raises(TooFewRowsError, match="larger than the database"):
        dask_knn(X, X, 41)
    with pytest.raises(InvalidParameterError, match="metric"):
        dask_knn(X, X, 2, metric="l3")
    with pytest.raises(ShapeError, match="paired"):
        dask_procrustes(X, X[:20])
    with pytest.raises(DtypeError, match="int"):
        dask_knn(X.astype(np.int32), X, 2)
    unknown = X[X[:, 0] > 0]
    with pytest.raises(ShapeError, match="unknown chunk sizes"):
        dask_knn(unknown, X, 2)
    bad = np.array(X.compute())
    bad[13, 2] = np.nan
    with pytest.raises(NonFiniteError, match="X: row 13"):
        dask_procrustes(da.from_array(bad, chunks=(10, 8)), X)


def test_parquet_refusals_are_minivec2vec_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from minivec2vec import DtypeError, InputFileError
    from minivec2vec.io.sources import open_source, scan
    pq.write_table(pa.table({"v": pa.array([[1.0, 2.0], [3.0]])}), tmp_path / "var.parquet")
    with pytest.raises(InputFileError, match="0 fixed-size list"):
        open_source(str(tmp_path / "var.parquet"))
    with pytest.raises(DtypeError, match="fixed-size list"):
        open_source(str(tmp_path / "var.parquet"), column="v")
    with pytest.raises(InputFileError, match="no column 'w'"):
        open_source(str(tmp_path / "var.parquet"), column="w")
    nulls = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"e": nulls}), tmp_path / "null.parquet")
    with pytest.raises(NonFiniteError, match="row 1 of column 'e' is null"):
        scan(open_source(str(tmp_path / "null.parquet")), 8192)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputFileError, match="not a readable Parquet"):
        open_source(str(tmp_path / "junk.parquet"))


def test_cli_refusals_are_one_line(cli_files, capsys):
    t = cli_files
    assert main(["apply", str(t / "none.map"), str(t / "x.npy"), "-o", str(t / "o.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("minivec2vec: error: map file")
    assert main(["evaluate", str(t / "m.map"), str(t / "x.npy"), str(t / "none.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err
