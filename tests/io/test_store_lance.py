"""LanceDB tables against the real library (embedded, no server): a table of A vectors with
ids and text is migrated to B with a map fitted on the shipped sample; B queries must find the
right rows in it with LanceDB's own search, as often as against ``transform`` on arrays."""
from __future__ import annotations

import os

import numpy as np
import pytest

from minivec2vec import (DimensionMismatchError, InputFileError, InvalidParameterError,
                         MiniVec2Vec, OutputPathError, PathNotFoundError)
from minivec2vec.cli import main
from minivec2vec.io.etl import apply_map
from minivec2vec.io.sources import open_source

lancedb = pytest.importorskip("lancedb")
pa = pytest.importorskip("pyarrow")

N_QUERIES = 200


def _table(db_dir, name, X, extra=None, **options):
    columns = {"doc_id": (np.arange(X.shape[0]) * 7 + 1000).astype(np.int64),
               "text": [f"text {i}" for i in range(X.shape[0])],
               "emb": pa.FixedSizeListArray.from_arrays(
                   pa.array(np.ascontiguousarray(X, np.float32).reshape(-1)), X.shape[1])}
    columns.update(extra or {})
    return lancedb.connect(str(db_dir)).create_table(name, pa.table(columns), **options)


def _vectors(table, column):
    return np.stack(table.to_arrow().column(column).to_numpy(zero_copy_only=False)).astype(
        np.float32)


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_lance_table_migrates_with_its_columns(tmp_path, rotation_split, rotation_map):
    s = rotation_split
    model = MiniVec2Vec.load(rotation_map)
    _table(tmp_path, "docs", s.test_a)
    source = open_source(f"lance:{tmp_path / 'docs.lance'}")
    assert (source.n_rows, source.n_features, source.column) == (s.test_a.shape[0], 384, "emb")
    assert source.read(0, source.n_rows).tobytes() == np.asarray(
        s.test_a, np.float32).tobytes()                          # vectors given back exactly

    assert main(["apply", str(rotation_map), f"lance:{tmp_path / 'docs.lance'}", "-o",
                 f"lance:{tmp_path / 'docs_b'}", "--quiet"]) == 0
    migrated = lancedb.connect(str(tmp_path)).open_table("docs_b")
    assert migrated.schema.names == ["doc_id", "text", "emb"]
    out = migrated.to_arrow()
    np.testing.assert_array_equal(out.column("doc_id").to_numpy(),
                                  np.arange(s.test_a.shape[0]) * 7 + 1000)
    assert out.column("text").to_pylist() == [f"text {i}" for i in range(s.test_a.shape[0])]
    mapped = model.transform(s.test_a)
    np.testing.assert_array_equal(_vectors(migrated, "emb"), mapped)
    assert os.path.exists(tmp_path / "docs_b.lance.json")
    assert not os.path.exists(tmp_path / "docs_b.partial.lance")

    # B queries (the same texts embedded by B, in the map's B frame) against the migrated
    # table, with LanceDB's exhaustive search (no index), find their row as transform does
    queries = _unit(np.asarray(s.test_b[:N_QUERIES], np.float64) - model.mean_b_)
    found = [migrated.search(q.astype(np.float32), vector_column_name="emb")
             .distance_type("cosine").limit(1).to_arrow().column("doc_id")[0].as_py()
             for q in queries]
    top1_store = np.mean(np.asarray(found) == np.arange(N_QUERIES) * 7 + 1000)
    top1_arrays = np.mean(np.argmax(queries @ _unit(mapped).T, axis=1) == np.arange(N_QUERIES))
    assert top1_arrays >= 0.95
    assert top1_store == top1_arrays


def test_lance_output_column_keeps_the_input_vectors(tmp_path, rotation_split, rotation_map):
    s = rotation_split
    _table(tmp_path, "docs", s.test_a[:300])
    apply_map(str(rotation_map), f"lance:{tmp_path / 'docs'}", f"lance:{tmp_path / 'both'}",
              output_column="emb_b", progress=False)
    both = lancedb.connect(str(tmp_path)).open_table("both")
    assert both.schema.names == ["doc_id", "text", "emb", "emb_b"]
    np.testing.assert_array_equal(_vectors(both, "emb"), np.asarray(s.test_a[:300], np.float32))
    np.testing.assert_array_equal(_vectors(both, "emb_b"),
                                  MiniVec2Vec.load(rotation_map).transform(s.test_a[:300]))


def test_lance_killed_run_resumes_to_the_same_table(tmp_path, rotation_split, rotation_map):
    s = rotation_split
    _table(tmp_path, "docs", s.test_a)

    def kill_after_two(n_chunks):
        if n_chunks == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_map(str(rotation_map), f"lance:{tmp_path / 'docs'}", f"lance:{tmp_path / 'out'}",
                  chunk_rows=128, progress=False, _after_chunk=kill_after_two)
    assert not (tmp_path / "out.lance").exists()                  # nothing under the name
    assert (tmp_path / "out.partial.lance").is_dir()
    resumed = []
    apply_map(str(rotation_map), f"lance:{tmp_path / 'docs'}", f"lance:{tmp_path / 'out'}",
              chunk_rows=128, progress=False, _after_chunk=resumed.append)
    n_chunks = -(-s.test_a.shape[0] // 128)
    assert len(resumed) == n_chunks - 2                           # the first two were kept
    apply_map(str(rotation_map), f"lance:{tmp_path / 'docs'}", f"lance:{tmp_path / 'whole'}",
              chunk_rows=128, progress=False)
    db = lancedb.connect(str(tmp_path))
    assert db.open_table("out").to_arrow().equals(db.open_table("whole").to_arrow())


def test_lance_reads_one_version_while_another_writer_commits(tmp_path, rotation_split):
    X = np.asarray(rotation_split.test_a[:100], np.float32)
    table = _table(tmp_path, "docs", X)
    source = open_source(f"lance:{tmp_path / 'docs.lance'}")
    table.add(pa.table({"doc_id": np.array([1], np.int64), "text": ["late"],
                        "emb": pa.FixedSizeListArray.from_arrays(pa.array(X[0]), 384)}))
    assert source.n_rows == 100
    blocks = [b for _, b in source.blocks(30)]
    assert np.concatenate(blocks).tobytes() == X.tobytes()       # the version it opened


def test_lance_bad_inputs_are_refused_before_writing(tmp_path, rotation_split, rotation_map):
    X = np.asarray(rotation_split.test_a[:50], np.float32)
    with pytest.raises(PathNotFoundError):
        open_source(f"lance:{tmp_path / 'missing.lance'}")
    _table(tmp_path, "two", X, extra={"other": pa.FixedSizeListArray.from_arrays(
        pa.array(X.reshape(-1)), 384)})
    with pytest.raises(InvalidParameterError, match="several vector columns"):
        open_source(f"lance:{tmp_path / 'two'}")
    with pytest.raises(InputFileError, match="no column 'nope'"):
        open_source(f"lance:{tmp_path / 'two'}", column="nope")
    _table(tmp_path, "small", np.ones((10, 8), np.float32))
    with pytest.raises(DimensionMismatchError):
        apply_map(str(rotation_map), f"lance:{tmp_path / 'small'}",
                  f"lance:{tmp_path / 'out'}", progress=False)
    with pytest.raises(OutputPathError, match="already exists"):
        apply_map(str(rotation_map), f"lance:{tmp_path / 'two'}", f"lance:{tmp_path / 'small'}",
                  column="emb", progress=False)
    with pytest.raises(InvalidParameterError, match="already has a column 'text'"):
        apply_map(str(rotation_map), f"lance:{tmp_path / 'two'}", f"lance:{tmp_path / 'o2'}",
                  column="emb", output_column="text", progress=False)
    np.save(tmp_path / "a.npy", X)
    with pytest.raises(InvalidParameterError, match="written from a lance input"):
        apply_map(str(rotation_map), str(tmp_path / "a.npy"), f"lance:{tmp_path / 'o3'}",
                  progress=False)
    bad = X.copy()
    bad[7, 3] = np.nan      # LanceDB refuses NaN vectors; it can store the row as null
    _table(tmp_path, "nan", bad, on_bad_vectors="null")
    from minivec2vec import NonFiniteError
    with pytest.raises(NonFiniteError, match="row 7"):
        apply_map(str(rotation_map), f"lance:{tmp_path / 'nan'}", f"lance:{tmp_path / 'o4'}",
                  progress=False)
    leftovers = sorted(p.name for p in tmp_path.iterdir()
                       if p.name.startswith(("out", "o2", "o3", "o4")))
    assert leftovers == []
