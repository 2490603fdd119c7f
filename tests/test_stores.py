"""Vector stores against the real libraries (no mocks): a store of A vectors is migrated to
B with a map fitted on the shipped sample, and B queries must find the right items in it."""
from __future__ import annotations

import os

import numpy as np
import pytest

from minivec2vec import InputFileError, MiniVec2Vec
from minivec2vec.cli import main
from minivec2vec.etl import apply_map
from minivec2vec.sources import open_source

faiss = pytest.importorskip("faiss")


def _index(kind, X, ids=None, metric=None):
    metric = faiss.METRIC_INNER_PRODUCT if metric is None else metric
    d = X.shape[1]
    if kind == "flat":
        index = faiss.IndexFlat(d, metric)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, 16, metric)
    elif kind == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, metric), d, 8, metric)
        index.train(X)
    elif kind == "pq":
        index = faiss.IndexPQ(d, 8, 8, metric)
        index.train(X)
    if ids is not None and kind != "ivf":
        index = faiss.IndexIDMap2(index)
    if ids is not None:
        index.add_with_ids(X, ids)
    else:
        index.add(X)
    return index


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("with_ids", [False, True])
def test_faiss_store_round_trip_and_migration(tmp_path, rotation_split, rotation_map, kind,
                                              with_ids):
    s = rotation_split
    model = MiniVec2Vec.load(rotation_map)
    corpus_a = np.ascontiguousarray(s.test_a, dtype=np.float32)
    ids = (np.arange(corpus_a.shape[0]) * 7 + 1000).astype(np.int64) if with_ids else None
    faiss.write_index(_index(kind, corpus_a, ids), str(tmp_path / "a.index"))

    source = open_source(f"faiss:{tmp_path / 'a.index'}")
    expected_ids = ids if ids is not None else np.arange(corpus_a.shape[0])
    order = np.argsort(source.ids()) if kind == "ivf" else np.arange(source.n_rows)
    got_ids = source.ids()[order]
    np.testing.assert_array_equal(got_ids, expected_ids)            # every id, once
    rows = source.read(0, source.n_rows)[order]
    assert rows.tobytes() == corpus_a.tobytes()                     # vectors given back exactly

    out = tmp_path / "b.index"
    assert main(["apply", str(rotation_map), f"faiss:{tmp_path / 'a.index'}", "-o",
                 f"faiss:{out}", "--quiet"]) == 0
    migrated = faiss.read_index(str(out))
    assert type(faiss.downcast_index(migrated)).__name__ == type(
        faiss.downcast_index(faiss.read_index(str(tmp_path / "a.index")))).__name__
    assert migrated.ntotal == corpus_a.shape[0]

    # B queries (the same texts embedded by B, centred as the map's B frame) against the
    # migrated store find their item as often as against transform's output on arrays
    queries = _unit(np.asarray(s.test_b, np.float64) - model.mean_b_).astype(np.float32)
    if kind == "ivf":
        faiss.extract_index_ivf(migrated).nprobe = 8               # exhaustive: all 8 lists
    if kind == "hnsw":    # a wide beam: the graph is built in parallel, so not bit-stable
        faiss.ParameterSpace().set_index_parameter(migrated, "efSearch", 256)
    _, found = migrated.search(queries, 1)
    position = {int(i): p for p, i in enumerate(expected_ids)}
    top1_store = np.mean([position.get(int(f), -1) == q for q, f in enumerate(found[:, 0])])
    mapped = model.transform(corpus_a)
    top1_arrays = np.mean(np.argmax(queries @ mapped.T, axis=1) == np.arange(len(queries)))
    assert top1_arrays >= 0.95
    tolerance = 0.0 if kind != "hnsw" else 0.02                    # HNSW search is approximate
    assert abs(top1_store - top1_arrays) <= tolerance, (top1_store, top1_arrays)


def test_faiss_lossy_index_is_refused_with_the_reason(tmp_path, rotation_split):
    X = np.ascontiguousarray(rotation_split.test_a, dtype=np.float32)
    faiss.write_index(_index("pq", X), str(tmp_path / "pq.index"))
    with pytest.raises(InputFileError, match="compressed codes"):
        open_source(f"faiss:{tmp_path / 'pq.index'}")


def test_faiss_index_rewritten_while_read_is_refused(tmp_path, monkeypatch):
    """A writer that replaces the index file during FAISS's read: the read is refused, since
    what was read may mix two versions; a file left alone reads as before."""
    path = tmp_path / "a.index"
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    faiss.write_index(_index("flat", vectors), str(path))
    real_read = faiss.read_index

    def read_while_a_writer_replaces_the_file(name, *args):
        index = real_read(name, *args)
        faiss.write_index(_index("flat", vectors[:40]), str(path) + ".new")
        os.replace(str(path) + ".new", path)
        return index

    monkeypatch.setattr(faiss, "read_index", read_while_a_writer_replaces_the_file)
    with pytest.raises(InputFileError, match="changed while it was being read"):
        open_source(f"faiss:{path}")
    monkeypatch.setattr(faiss, "read_index", real_read)
    assert open_source(f"faiss:{path}").n_rows == 40


def test_faiss_bad_inputs_are_refused_before_writing(tmp_path, rotation_map, rotation_split):
    from minivec2vec import DimensionMismatchError, InvalidParameterError, PathNotFoundError
    (tmp_path / "junk.index").write_bytes(b"not an index")
    with pytest.raises(InputFileError, match="not a readable FAISS index"):
        open_source(f"faiss:{tmp_path / 'junk.index'}")
    with pytest.raises(PathNotFoundError):
        open_source(f"faiss:{tmp_path / 'missing.index'}")
    small = np.ones((10, 8), np.float32)
    faiss.write_index(_index("flat", small), str(tmp_path / "d8.index"))
    with pytest.raises(DimensionMismatchError):
        apply_map(str(rotation_map), f"faiss:{tmp_path / 'd8.index'}",
                  f"faiss:{tmp_path / 'out.index'}", progress=False)
    np.save(tmp_path / "a.npy", rotation_split.test_a)
    with pytest.raises(InvalidParameterError, match="written from a faiss input"):
        apply_map(str(rotation_map), str(tmp_path / "a.npy"), f"faiss:{tmp_path / 'o.index'}",
                  progress=False)
    assert not (tmp_path / "out.index").exists() and not (tmp_path / "o.index").exists()
