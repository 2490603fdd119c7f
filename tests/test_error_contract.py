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
from minivec2vec.etl import apply_map

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
    import minivec2vec.evaluation as evaluation_module
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
