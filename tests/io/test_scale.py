"""Out-of-core inputs, the memory plan, the streaming resumable apply and the synthetic pair."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import minivec2vec
from minivec2vec import MemoryLimitError, MiniVec2Vec, evaluate
from minivec2vec._runtime.memory import FIXED_OVERHEAD
from minivec2vec.cli import main
from minivec2vec.io.etl import apply_map
from minivec2vec.kernels.rows import column_mean, sample_rows
from minivec2vec.io.sources import NpyShardsSource, open_source, scan
from minivec2vec.evaluation.synthetic import generate_pair

# children import the same minivec2vec as this process (installed, or the source tree with its
# built extension), never the bare source tree of the checkout
SRC = str(Path(minivec2vec.__file__).resolve().parents[1])
SMALL = dict(n_runs=4, refine_iter=5, refine_clusters=40, mutual_iter=2, mutual_sample=2000)


def _shards(tmp_path, X, sizes, name="shards"):
    d = tmp_path / name
    d.mkdir()
    start = 0
    for i, size in enumerate(sizes):
        np.save(d / f"part-{i:03d}.npy", X[start:start + size])
        start += size
    assert start == X.shape[0]
    return d


def _parquet(path, X, column="embedding", row_group_size=None, extra=True):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    values = pa.array(X.reshape(-1))
    emb = pa.FixedSizeListArray.from_arrays(values, X.shape[1])
    cols = {column: emb}
    if extra:
        cols["id"] = pa.array(np.arange(X.shape[0]))
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


@pytest.fixture(params=["float32", "float16"])
def data(request, rng):
    return rng.standard_normal((1000, 12)).astype(request.param)


def _all_forms(tmp_path, X):
    np.save(tmp_path / "x.npy", X)
    shards = _shards(tmp_path, X, [300, 1, 0, 450, 249])
    files = sorted(str(p) for p in shards.glob("*.npy"))
    pq_one = _parquet(tmp_path / "x.parquet", X, row_group_size=128)
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    _parquet(pq_dir / "p0.parquet", X[:600], row_group_size=100)
    _parquet(pq_dir / "p1.parquet", X[600:], row_group_size=1000)
    return {
        "array": X,
        "memmap": np.load(tmp_path / "x.npy", mmap_mode="r"),
        "npy path": str(tmp_path / "x.npy"),
        "shard dir": shards,
        "shard list": files,
        "parquet file": str(pq_one),
        "parquet dir": pq_dir,
    }


def test_every_input_form_reads_the_same_rows(tmp_path, data):
    X = data
    idx = np.array([0, 1, 2, 299, 300, 301, 750, 751, 999])
    for form, obj in _all_forms(tmp_path, X).items():
        src = open_source(obj, "X")
        assert (src.n_rows, src.n_features, src.dtype) == (1000, 12, X.dtype), form
        for block_rows in (7, 300, 4096):
            starts, parts = [], []
            for start, block in src.blocks(block_rows):
                starts.append(start)
                parts.append(np.array(block))
            assert all(p.shape[0] == block_rows for p in parts[:-1]), form
            assert starts == list(range(0, 1000, block_rows)), form
            np.testing.assert_array_equal(np.concatenate(parts), X, err_msg=form)
            later = [(start, np.array(block)) for start, block in src.blocks(block_rows, 293)]
            assert [start for start, _ in later] == list(range(293, 1000, block_rows)), form
            np.testing.assert_array_equal(np.concatenate([b for _, b in later]), X[293:])
        np.testing.assert_array_equal(src.take(idx), X[idx], err_msg=form)
        np.testing.assert_array_equal(src.read(295, 305), X[295:305], err_msg=form)
        mean, rows = scan(src, 8192, idx)
        # the mean is bit-identical whatever the storage, and right
        np.testing.assert_array_equal(mean, column_mean(X), err_msg=form)
        np.testing.assert_allclose(mean, X.astype(np.float64).mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(rows, X[idx].astype(np.float32), err_msg=form)


def test_memmap_is_read_from_its_file_not_through_the_mapping(tmp_path, data):
    np.save(tmp_path / "x.npy", data)
    assert isinstance(open_source(np.load(tmp_path / "x.npy", mmap_mode="r")), NpyShardsSource)
    assert isinstance(open_source([tmp_path / "x.npy"]), NpyShardsSource)


def test_bad_inputs_are_named(tmp_path, rng):
    X = rng.standard_normal((500, 8)).astype(np.float32)
    X[377, 3] = np.nan
    shards = _shards(tmp_path, X, [200, 300])
    with pytest.raises(ValueError, match="row 377 contains NaN"):
        scan(open_source(shards, "X_a"), 8192)
    np.save(tmp_path / "i.npy", np.zeros((4, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="int32"):
        open_source(str(tmp_path / "i.npy"))
    np.save(tmp_path / "w.npy", np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="5 features"):
        open_source([str(tmp_path / "i.npy").replace("i.npy", "w.npy"),
                     str(shards / "part-000.npy")])
    with pytest.raises(FileNotFoundError):
        open_source(str(tmp_path / "missing.npy"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .npy or .parquet"):
        open_source(empty)
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"v": pa.array([[1.0, 2.0], [3.0]])}), tmp_path / "var.parquet")
    with pytest.raises(ValueError, match="0 fixed-size list"):
        open_source(str(tmp_path / "var.parquet"))
    with pytest.raises(TypeError, match="fixed-size list"):
        open_source(str(tmp_path / "var.parquet"), column="v")
    nulls = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    pq.write_table(pa.table({"e": nulls}), tmp_path / "null.parquet")
    with pytest.raises(ValueError, match="row 1 of column 'e' is null"):
        scan(open_source(str(tmp_path / "null.parquet")), 8192)


# ---------------------------------------------------------------------------- fit contract
def test_fit_on_files_equals_fit_on_arrays_and_follows_the_sampling_contract(tmp_path, rng):
    X_a = rng.standard_normal((3000, 16)).astype(np.float32)
    X_b = (rng.standard_normal((2500, 16)) * np.linspace(2, 0.5, 16)).astype(np.float16)
    # plumbing, not quality: on these unrelated random sides the default fit is doubtful and
    # would run five extra restarts of 200 transport iterations each, three times over (the
    # longest test of the suite); two restarts of 5 iterations follow the same sampling contract
    params = dict(SMALL, random_state=3, fit_sample=1200, n_restarts=2, extra_restarts=0,
                  transport_iter=5)
    on_arrays = MiniVec2Vec(**params).fit(X_a, X_b)
    on_files = MiniVec2Vec(**params, memory_limit="1GB").fit(
        _shards(tmp_path, X_a, [1000, 1000, 1000], "a"),
        _parquet(tmp_path / "b.parquet", X_b, row_group_size=700))
    np.testing.assert_array_equal(on_arrays.W_, on_files.W_)
    np.testing.assert_array_equal(on_arrays.mean_b_, on_files.mean_b_)
    # the contract other engines build on: means over all rows, sample_rows A then B, fit_from_sample
    model = MiniVec2Vec(**params)
    rng_fit = np.random.default_rng(3)
    rows_a = sample_rows(X_a, 1200, rng_fit)
    rows_b = sample_rows(X_b, 1200, rng_fit)
    model.fit_from_sample(rows_a, rows_b, column_mean(X_a), column_mean(X_b), rng_fit)
    np.testing.assert_array_equal(model.W_, on_arrays.W_)
    assert rows_b.dtype == np.float16  # not normalised in place: the caller's rows are kept


# ---------------------------------------------------------------------------- memory plan
def test_memory_limit_too_small_fails_before_reading(tmp_path, rng):
    X = rng.standard_normal((2000, 16)).astype(np.float32)
    with pytest.raises(MemoryError, match="reserved for Python"):
        MiniVec2Vec(memory_limit="200MB").fit(X, X)
    # room for the overhead but not for the sampled rows: the error says which fit_sample fits
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32,
                                    shape=(300_000, 256))  # sparse file, never read
    del big
    with pytest.raises(MemoryLimitError, match=r"fit_sample <= \d+"):
        MiniVec2Vec(memory_limit=FIXED_OVERHEAD + 100 * 10**6).fit(
            str(tmp_path / "big.npy"), str(tmp_path / "big.npy"))
    model = MiniVec2Vec(**SMALL, random_state=0).fit(X, X[::-1])
    with pytest.raises(MemoryError, match="transform"):
        model.transform(X, memory_limit="250MB")
    # the result of transform is held in memory, so it must fit too (300,000 x 16 x 4 bytes)
    with pytest.raises(MemoryError, match="the result alone"):
        model.transform(np.broadcast_to(X[:1], (300_000, 16)),
                        memory_limit=FIXED_OVERHEAD + 10**7)


def test_transform_streams_any_source_and_matches_in_memory(tmp_path, rng):
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    model = MiniVec2Vec(**SMALL, random_state=0).fit(X, X[::-1] @ np.eye(16)[::-1])
    np.save(tmp_path / "x.npy", X)
    expected = model.transform(X, add_mean=True)
    got = model.transform(str(tmp_path / "x.npy"), add_mean=True, memory_limit="400MB")
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------- apply
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fitted")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 16)).astype(np.float32) * np.linspace(3, 0.3, 16)
    model = MiniVec2Vec(**SMALL, random_state=0).fit(X, X[::-1])
    model.save(tmp / "m.map")
    inputs = _shards(tmp, rng.standard_normal((10_000, 16)).astype(np.float16),
                     [4000, 4000, 2000], "in")
    return tmp / "m.map", inputs


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("form", ["npy shards", "parquet"])
def test_apply_resumes_after_a_failure_byte_identical(tmp_path, fitted, form):
    map_path, inputs = fitted
    if form == "parquet":
        inputs = _parquet(tmp_path / "in.parquet", open_source(inputs).read(0, 10_000),
                          row_group_size=2500)
    reference = tmp_path / "ref.npy"
    apply_map(str(map_path), inputs, reference, chunk_rows=1500, progress=False)
    model = MiniVec2Vec.load(map_path)
    np.testing.assert_array_equal(np.load(reference),
                                  model.transform(inputs))

    out = tmp_path / "out.npy"

    def stop_after_3(n_chunks):
        if n_chunks == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        apply_map(str(map_path), inputs, out, chunk_rows=1500, progress=False,
                  _after_chunk=stop_after_3)
    assert not out.exists()   # never a half-written output
    journal = json.loads((tmp_path / "out.npy.partial.json").read_text())
    assert journal["rows_done"] == 4500
    seen = []
    apply_map(str(map_path), inputs, out, chunk_rows=1500, progress=False,
              _after_chunk=seen.append)
    assert len(seen) == 4          # only the 4 missing chunks were computed (6000 rows)
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "out.npy.partial").exists()
    assert not (tmp_path / "out.npy.partial.json").exists()


def test_apply_restarts_when_the_options_changed(tmp_path, fitted):
    map_path, inputs = fitted
    out = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        apply_map(str(map_path), inputs, out, chunk_rows=1000, progress=False,
                  _after_chunk=lambda n: (_ for _ in ()).throw(RuntimeError("x")) if n == 2 else 0)
    seen = []
    apply_map(str(map_path), inputs, out, chunk_rows=1000, progress=False, add_mean=True,
              _after_chunk=seen.append)
    assert len(seen) == 10         # add_mean differs from the partial run: started over
    np.testing.assert_array_equal(np.load(out),
                                  MiniVec2Vec.load(map_path).transform(inputs, add_mean=True))
    # in-memory arrays have no identity across runs: never resumed
    X = open_source(inputs).read(0, 10_000)
    with pytest.raises(RuntimeError):
        apply_map(str(map_path), X, out, chunk_rows=1000, progress=False,
                  _after_chunk=lambda n: (_ for _ in ()).throw(RuntimeError("x")) if n == 2 else 0)
    seen = []
    apply_map(str(map_path), X, out, chunk_rows=1000, progress=False, _after_chunk=seen.append)
    assert len(seen) == 10


def test_apply_killed_process_resumes_byte_identical(tmp_path, fitted):
    """A real SIGKILL in the middle of a run, then a rerun through the CLI."""
    map_path, inputs = fitted
    out, marker = tmp_path / "out.npy", tmp_path / "two-chunks-done"
    script = f"""
import time, pathlib
from minivec2vec.io.etl import apply_map
def pause(n):
    if n == 2:
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(120)
apply_map({str(map_path)!r}, {str(inputs)!r}, {str(out)!r}, chunk_rows=1024, progress=False,
          map_path={str(map_path)!r}, _after_chunk=pause)
"""
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "the apply process ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    assert json.loads((tmp_path / "out.npy.partial.json").read_text())["rows_done"] == 2048
    assert main(["apply", str(map_path), str(inputs), "-o", str(out), "--chunk-rows", "1024",
                 "--quiet"]) == 0
    reference = tmp_path / "ref.npy"
    assert main(["apply", str(map_path), str(inputs), "-o", str(reference), "--chunk-rows",
                 "1024", "--quiet"]) == 0
    assert out.read_bytes() == reference.read_bytes()


def test_apply_sidecar_and_progress(tmp_path, fitted, capsys):
    map_path, inputs = fitted
    out = tmp_path / "out.npy"
    assert main(["apply", str(map_path), str(inputs), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert "rows" in captured.err and "10.0k" in captured.err      # the tqdm bar
    sidecar = json.loads((tmp_path / "out.npy.json").read_text())
    assert sidecar["map_sha256"] == _sha(map_path)
    assert sidecar["rows"] == 10_000 and sidecar["dim"] == 16
    assert sidecar["dtype"] == "float32" and sidecar["input_dtype"] == "float16"
    assert [f[0] for f in sidecar["input_files"]] == sorted(
        str(p) for p in Path(inputs).glob("*.npy"))
    assert sidecar["map"] == str(map_path)
    assert main(["apply", str(map_path), str(inputs), "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["apply", str(map_path), str(inputs), "-o", str(out), "--memory-limit",
                 "100MB"]) == 2
    assert "too small" in capsys.readouterr().err


def test_apply_bad_rows_leave_nothing(tmp_path, fitted):
    map_path, _ = fitted
    X = np.ones((5000, 16), dtype=np.float32)
    X[3210, 0] = np.inf
    with pytest.raises(ValueError, match="row 3210"):
        apply_map(str(map_path), X, tmp_path / "o.npy", chunk_rows=1000, progress=False)
    assert os.listdir(tmp_path) == []


def test_streamed_apply_memory_is_bounded_by_the_chunk(tmp_path, rng):
    """Python-level allocations (numpy reports to tracemalloc) stay a few chunks, not n rows."""
    X = rng.standard_normal((200_000, 32)).astype(np.float32)
    path = _shards(tmp_path, X, [100_000, 100_000], "in")
    del X
    model = MiniVec2Vec(**SMALL, random_state=0).fit(
        rng.standard_normal((2000, 32)), rng.standard_normal((2000, 32)))
    chunk = 4096
    chunk_bytes = chunk * 32 * 4
    tracemalloc.start()
    try:
        apply_map(model, path, tmp_path / "o.npy", chunk_rows=chunk, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = 200_000 * 32 * 4
    assert peak < 6 * chunk_bytes, (peak, chunk_bytes)
    assert peak < total / 10
    # the reading pass of fit is bounded the same way (block + gathered sample only)
    tracemalloc.start()
    try:
        scan(open_source(path), 8192, np.arange(0, 200_000, 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8192 * 32 * (4 + 1) * 2 + 2000 * 32 * 4 * 2


# ---------------------------------------------------------------------------- generator
def test_generator_ground_truth_is_recovered(tmp_path):
    paths = generate_pair(tmp_path / "pair", 5000, 24, shard_rows=1800, n_test=400, seed=2)
    assert sorted(os.listdir(paths["a"])) == ["part-00000.npy", "part-00001.npy",
                                             "part-00002.npy"]
    R = np.load(paths["true_map"])
    np.testing.assert_allclose(R @ R.T, np.eye(24), atol=1e-10)
    a, b = open_source(paths["a"]), open_source(paths["b"])
    assert (a.n_rows, b.n_rows, a.n_features) == (5000, 5000, 24)
    # disjoint rows: no A row maps onto any B row
    A = a.read(0, 5000).astype(np.float64)
    B = b.read(0, 5000).astype(np.float64)
    A_c, B_c = A - A.mean(0), B - B.mean(0)
    d = ((A_c[:200] @ R)[:, None, :] - B_c[None, :, :]) ** 2
    assert d.sum(-1).min() > 0.01
    # paired test rows: B = A_centred @ R + small noise
    ta, tb = np.load(paths["test_a"]), np.load(paths["test_b"])
    residual = (ta - A.mean(0)) @ R - (tb - B.mean(0))
    assert np.linalg.norm(residual) / np.linalg.norm(tb - B.mean(0)) < 0.2
    model = MiniVec2Vec(**SMALL, random_state=0).fit(paths["a"], paths["b"])
    assert np.linalg.norm(model.W_ - R) / np.linalg.norm(R) < 0.15
    assert evaluate(model.transform(ta), tb - model.mean_b_, pool=400)["top1"] > 0.98
    # a random orthogonal map is far from R: the bound above means something
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((24, 24)))
    assert np.linalg.norm(Q - R) / np.linalg.norm(R) > 1.0


def test_generator_does_not_depend_on_the_shard_size(tmp_path):
    p1 = generate_pair(tmp_path / "one", 9000, 8, shard_rows=9000, n_test=10, seed=4,
                       dtype="float16")
    p2 = main(["generate", str(tmp_path / "two"), "--rows", "9000", "--dim", "8",
               "--shard-rows", "2000", "--test-rows", "10", "--seed", "4", "--dtype", "float16"])
    assert p2 == 0
    one, two = open_source(p1["a"]), open_source(str(tmp_path / "two" / "a"))
    assert one.dtype == np.float16 and len(two.paths) == 5
    np.testing.assert_array_equal(one.read(0, 9000), two.read(0, 9000))
    with pytest.raises(FileExistsError):
        generate_pair(tmp_path / "one", 10, 8)


def test_cli_apply_n_threads_gives_the_same_bytes(tmp_path, fitted):
    """--n-threads bounds the BLAS threads of apply's matmul; the output does not change."""
    map_path, inputs = fitted
    outputs = []
    for threads in ([], ["--n-threads", "1"]):
        out = tmp_path / f"out{len(outputs)}.npy"
        assert main(["apply", str(map_path), str(inputs), "-o", str(out), "--quiet",
                     "--chunk-rows", "3000", *threads]) == 0
        outputs.append(_sha(out))
    assert outputs[0] == outputs[1]


# ---------------------------------------------------------------------------- Parquet output
def _table_with_metadata(tmp_path, X):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    n = X.shape[0]
    table = pa.table({"id": pa.array([f"doc-{i}" for i in range(n)]),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)),
                                                                     X.shape[1]),
                      "year": pa.array(np.arange(n) % 50 + 1970, type=pa.int16())})
    path = tmp_path / "store.parquet"
    pq.write_table(table, path, row_group_size=1800)
    return path, table


def test_apply_parquet_carries_every_other_column_in_order(tmp_path, fitted):
    pq = pytest.importorskip("pyarrow.parquet")
    map_path, inputs = fitted
    X = open_source(inputs).read(0, 10_000)
    path, table = _table_with_metadata(tmp_path, X)
    model = MiniVec2Vec.load(map_path)
    out = tmp_path / "mapped.parquet"
    sidecar = apply_map(str(map_path), str(path), out, chunk_rows=1500, progress=False)
    got = pq.read_table(out)
    assert got.column_names == ["id", "embedding", "year"]          # replaced in place
    assert got.column("id").equals(table.column("id"))
    assert got.column("year").equals(table.column("year"))
    vectors = np.asarray(got.column("embedding").combine_chunks().flatten()).reshape(10_000, -1)
    assert vectors.dtype == np.float32
    assert vectors.tobytes() == model.transform(X).tobytes()
    assert pq.ParquetFile(out).metadata.num_row_groups == 7          # one per chunk
    assert sidecar["output_format"] == "parquet" and sidecar["rows"] == 10_000
    assert not (tmp_path / "mapped.parquet.partial.d").exists()

    # under a new column name the input column stays as it was
    out2 = tmp_path / "both.parquet"
    assert main(["apply", str(map_path), str(path), "-o", str(out2), "--output-column",
                 "embedding_b", "--quiet", "--chunk-rows", "4000"]) == 0
    both = pq.read_table(out2)
    assert both.column_names == ["id", "embedding", "year", "embedding_b"]
    assert both.column("embedding").equals(table.column("embedding"))
    assert (np.asarray(both.column("embedding_b").combine_chunks().flatten()).tobytes()
            == vectors.tobytes())
    # a name the input already uses is refused before anything is written
    bad = tmp_path / "bad.parquet"
    assert main(["apply", str(map_path), str(path), "-o", str(bad), "--output-column", "id",
                 "--quiet"]) == 2
    assert not bad.exists() and not (tmp_path / "bad.parquet.partial.d").exists()


def test_apply_parquet_resumes_byte_identical(tmp_path, fitted):
    pytest.importorskip("pyarrow")
    map_path, inputs = fitted
    path, _ = _table_with_metadata(tmp_path, open_source(inputs).read(0, 10_000))
    reference = tmp_path / "ref.parquet"
    apply_map(str(map_path), str(path), reference, chunk_rows=1500, progress=False)
    out = tmp_path / "out.parquet"

    def stop_after_3(n_chunks):
        if n_chunks == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated"):
        apply_map(str(map_path), str(path), out, chunk_rows=1500, progress=False,
                  _after_chunk=stop_after_3)
    assert not out.exists()   # never a half-written output
    assert json.loads((tmp_path / "out.parquet.partial.json").read_text())["rows_done"] == 4500
    seen = []
    apply_map(str(map_path), str(path), out, chunk_rows=1500, progress=False,
              _after_chunk=seen.append)
    assert len(seen) == 4          # only the missing chunks were computed
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / "out.parquet.partial.json").exists()


def test_apply_npy_input_to_parquet_writes_the_vectors_alone(tmp_path, fitted):
    pq = pytest.importorskip("pyarrow.parquet")
    map_path, inputs = fitted
    out = tmp_path / "v.parquet"
    apply_map(str(map_path), inputs, out, chunk_rows=3000, progress=False, inverse=True,
              output_column="vec")
    got = pq.read_table(out)
    assert got.column_names == ["vec"]
    model = MiniVec2Vec.load(map_path)
    assert (np.asarray(got.column("vec").combine_chunks().flatten()).tobytes()
            == model.inverse_transform(inputs).tobytes())


def test_output_column_needs_a_parquet_output(tmp_path, fitted):
    from minivec2vec import InvalidParameterError
    map_path, inputs = fitted
    with pytest.raises(InvalidParameterError, match="only a Parquet output"):
        apply_map(str(map_path), inputs, tmp_path / "v.npy", output_column="vec", progress=False)
    assert not (tmp_path / "v.npy").exists() and not (tmp_path / "v.npy.partial").exists()
