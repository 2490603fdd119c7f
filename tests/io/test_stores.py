"""Vector stores against the real libraries (no mocks): a store of A vectors is migrated to
B with a map fitted on the shipped sample, and B queries must find the right items in it."""
from __future__ import annotations

import os

import numpy as np
import pytest

from minivec2vec import InputFileError, MiniVec2Vec
from minivec2vec.cli import main
from minivec2vec.io.etl import apply_map
from minivec2vec.io.sources import open_source

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


def test_the_old_index_answers_b_queries_through_the_inverse_map(tmp_path, rotation_split,
                                                                 rotation_map):
    """The cut-over: the A index stays as it is, B queries are mapped B -> A (``apply
    --inverse`` on the query file) and searched in it; they find their items exactly as the
    same search on arrays does, and as often as B queries against the migrated store."""
    s = rotation_split
    model = MiniVec2Vec.load(rotation_map)
    corpus_a = np.ascontiguousarray(s.test_a, dtype=np.float32)
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(corpus_a.shape[1]))
    ids = np.arange(corpus_a.shape[0], dtype=np.int64) + 5000
    old.add_with_ids(corpus_a, ids)
    np.save(tmp_path / "queries_b.npy", s.test_b)
    assert main(["apply", str(rotation_map), str(tmp_path / "queries_b.npy"), "-o",
                 str(tmp_path / "queries_in_a.npy"), "--inverse", "--quiet"]) == 0
    queries_in_a = np.load(tmp_path / "queries_in_a.npy")
    np.testing.assert_array_equal(queries_in_a, model.inverse_transform(s.test_b))
    _, found = old.search(queries_in_a, 1)
    top1_old_index = np.mean(found[:, 0] == ids)
    expected = np.argmax(queries_in_a @ corpus_a.T, axis=1) + 5000    # brute force on arrays
    np.testing.assert_array_equal(found[:, 0], expected)
    forward = model.transform(corpus_a)
    queries_b = np.asarray(s.test_b, np.float32) - model.mean_b_.astype(np.float32)
    top1_migrated = np.mean(np.argmax(queries_b @ forward.T, axis=1) == np.arange(len(ids)))
    assert top1_old_index >= 0.95 and abs(top1_old_index - top1_migrated) <= 0.01


def test_fit_reads_its_training_rows_from_stores(tmp_path, rotation_split):
    """``minivec2vec fit faiss:A faiss:B`` fits the same map, to the bit, as the fit on the
    arrays the indexes hold (known pairs keep the fit short; the rows come from the stores)."""
    s = rotation_split
    train_a = np.ascontiguousarray(s.train_a, dtype=np.float32)
    train_b = np.ascontiguousarray(s.train_b, dtype=np.float32)
    faiss.write_index(_index("flat", train_a), str(tmp_path / "a.index"))
    faiss.write_index(_index("hnsw", train_b), str(tmp_path / "b.index"))
    np.save(tmp_path / "pairs_a.npy", train_a[:100])
    np.save(tmp_path / "pairs_b.npy", np.asarray(s.paired_train_b[:100], np.float32))
    assert main(["fit", f"faiss:{tmp_path / 'a.index'}", f"faiss:{tmp_path / 'b.index'}",
                 "-o", str(tmp_path / "from_stores.map"), "--seed", "0", "--n-threads", "1",
                 "--known-pairs", str(tmp_path / "pairs_a.npy"), str(tmp_path / "pairs_b.npy"),
                 "--quiet"]) == 0
    from_stores = MiniVec2Vec.load(tmp_path / "from_stores.map")
    from_arrays = MiniVec2Vec(random_state=0, n_threads=1).fit(
        train_a, train_b, known_pairs=(train_a[:100], np.load(tmp_path / "pairs_b.npy")))
    assert from_stores.W_.tobytes() == from_arrays.W_.tobytes()
    assert from_stores.mean_b_.tobytes() == from_arrays.mean_b_.tobytes()
