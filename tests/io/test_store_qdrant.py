"""Qdrant collections against the real client in local mode (embedded, no server): a
collection of A vectors with ids and payloads is migrated to B with a map fitted on the shipped
sample; B queries must find the right points with Qdrant's own search, as often as against
``transform`` on arrays."""
from __future__ import annotations

import numpy as np
import pytest

from minivec2vec import (DimensionMismatchError, InputFileError, InvalidParameterError,
                         MiniVec2Vec, OutputPathError, PathNotFoundError)
from minivec2vec.cli import main
from minivec2vec.io.etl import apply_map
from minivec2vec.io.sources import open_source

qdrant_client = pytest.importorskip("qdrant_client")
from qdrant_client import models  # noqa: E402

from minivec2vec.io.stores import qdrant_collection  # noqa: E402

N_QUERIES = 200


@pytest.fixture(autouse=True)
def _unlock_folders():
    yield
    qdrant_collection.close_clients()


def _ids(n):
    return [int(i) * 7 + 1000 for i in range(n)]


def _collection(folder, name, X, named=None, distance=models.Distance.COSINE):
    """A collection of X's rows (ids 1000, 1007, ...; payload {"text": ...}), client closed."""
    client = qdrant_client.QdrantClient(path=str(folder))
    params = models.VectorParams(size=X.shape[1], distance=distance)
    client.create_collection(name, vectors_config=params if named is None else
                             {v: params for v in named})
    rows = np.asarray(X, np.float32).tolist()
    vectors = rows if named is None else {v: rows for v in named}
    client.upsert(name, points=models.Batch(ids=_ids(len(rows)), vectors=vectors,
                                            payloads=[{"text": f"text {i}"} for i in range(len(rows))]))
    client.close()


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_qdrant_collection_migrates_with_ids_and_payloads(tmp_path, rotation_split,
                                                          rotation_map):
    s = rotation_split
    model = MiniVec2Vec.load(rotation_map)
    _collection(tmp_path / "db", "docs", s.test_a)
    source = open_source(f"qdrant:{tmp_path / 'db' / 'docs'}")
    assert (source.n_rows, source.n_features) == (s.test_a.shape[0], 384)
    assert source.ids() == _ids(s.test_a.shape[0])
    # local mode keeps the vectors as given (a Qdrant server normalises cosine ones)
    assert source.read(0, source.n_rows).tobytes() == np.asarray(s.test_a, np.float32).tobytes()

    # the migrated collection lives in the same folder as the input
    assert main(["apply", str(rotation_map), f"qdrant:{tmp_path / 'db' / 'docs'}", "-o",
                 f"qdrant:{tmp_path / 'db' / 'docs_b'}", "--quiet"]) == 0
    client = qdrant_collection.client(str(tmp_path / "db"))
    points, _ = client.scroll("docs_b", limit=10_000, with_vectors=True, with_payload=True)
    assert [p.id for p in points] == _ids(s.test_a.shape[0])
    assert [p.payload["text"] for p in points] == [f"text {i}" for i in range(len(points))]
    mapped = model.transform(source.read(0, source.n_rows))
    np.testing.assert_allclose(np.asarray([p.vector for p in points]), _unit(mapped), atol=1e-6)
    assert (tmp_path / "db" / "docs_b.minivec2vec.json").exists()
    assert not (tmp_path / "db" / "docs_b.minivec2vec-partial.json").exists()

    queries = _unit(np.asarray(s.test_b[:N_QUERIES], np.float64) - model.mean_b_)
    found = [client.query_points("docs_b", query=q.tolist(), limit=1).points[0].id
             for q in queries]
    top1_store = np.mean(np.asarray(found) == np.asarray(_ids(N_QUERIES)))
    top1_arrays = np.mean(np.argmax(queries @ _unit(mapped).T, axis=1) == np.arange(N_QUERIES))
    assert top1_arrays >= 0.95
    assert top1_store == top1_arrays


def test_qdrant_named_vectors_and_output_column(tmp_path, rotation_split, rotation_map):
    X = np.asarray(rotation_split.test_a[:300], np.float32)
    _collection(tmp_path / "db", "docs", X, named=["minilm", "other"],
                distance=models.Distance.DOT)
    with pytest.raises(InvalidParameterError, match="named vectors"):
        open_source(f"qdrant:{tmp_path / 'db' / 'docs'}")
    apply_map(str(rotation_map), f"qdrant:{tmp_path / 'db' / 'docs'}",
              f"qdrant:{tmp_path / 'out' / 'docs'}", column="minilm", output_column="e5",
              progress=False)
    client = qdrant_collection.client(str(tmp_path / "out"))
    points, _ = client.scroll("docs", limit=1000, with_vectors=True)
    assert sorted(points[0].vector) == ["e5", "minilm", "other"]
    np.testing.assert_array_equal(np.asarray([p.vector["minilm"] for p in points]), X)
    np.testing.assert_allclose(np.asarray([p.vector["e5"] for p in points]),
                               MiniVec2Vec.load(rotation_map).transform(X), atol=1e-6)


def test_qdrant_killed_run_resumes_to_the_same_collection(tmp_path, rotation_split,
                                                          rotation_map):
    X = np.asarray(rotation_split.test_a[:600], np.float32)
    _collection(tmp_path / "db", "docs", X, distance=models.Distance.DOT)

    def kill_after_two(n_chunks):
        if n_chunks == 2:
            raise KeyboardInterrupt

    uri_in, uri_out = f"qdrant:{tmp_path / 'db' / 'docs'}", f"qdrant:{tmp_path / 'db' / 'b'}"
    with pytest.raises(KeyboardInterrupt):
        apply_map(str(rotation_map), uri_in, uri_out, chunk_rows=100, progress=False,
                  _after_chunk=kill_after_two)
    client = qdrant_collection.client(str(tmp_path / "db"))
    assert not client.collection_exists("b")                     # nothing under the name
    resumed = []
    apply_map(str(rotation_map), uri_in, uri_out, chunk_rows=100, progress=False,
              _after_chunk=resumed.append)
    assert len(resumed) == 4                                      # 6 chunks, 2 kept
    points, _ = client.scroll("b", limit=1000, with_vectors=True, with_payload=True)
    assert [p.id for p in points] == _ids(600)
    np.testing.assert_array_equal(np.asarray([p.vector for p in points]),
                                  MiniVec2Vec.load(rotation_map).transform(X))


def test_qdrant_bad_inputs_are_refused_before_writing(tmp_path, rotation_split, rotation_map):
    X = np.asarray(rotation_split.test_a[:50], np.float32)
    _collection(tmp_path / "db", "docs", X)
    _collection(tmp_path / "db", "small", np.ones((10, 8), np.float32))
    with pytest.raises(PathNotFoundError, match="no Qdrant collection 'nope'"):
        open_source(f"qdrant:{tmp_path / 'db' / 'nope'}")
    with pytest.raises(PathNotFoundError, match="no Qdrant storage folder"):
        open_source(f"qdrant:{tmp_path / 'nowhere' / 'docs'}")
    with pytest.raises(InputFileError, match="one unnamed vector"):
        open_source(f"qdrant:{tmp_path / 'db' / 'docs'}", column="emb")
    with pytest.raises(DimensionMismatchError):
        apply_map(str(rotation_map), f"qdrant:{tmp_path / 'db' / 'small'}",
                  f"qdrant:{tmp_path / 'db' / 'out'}", progress=False)
    with pytest.raises(OutputPathError, match="already exists"):
        apply_map(str(rotation_map), f"qdrant:{tmp_path / 'db' / 'docs'}",
                  f"qdrant:{tmp_path / 'db' / 'small'}", progress=False)
    client = qdrant_collection.client(str(tmp_path / "db"))
    assert sorted(c.name for c in client.get_collections().collections) == ["docs", "small"]
    qdrant_collection.close_clients()
    # a folder held by another client: local mode allows one, so it is reported
    other = qdrant_client.QdrantClient(path=str(tmp_path / "db"))
    try:
        with pytest.raises(InputFileError, match="open in another client"):
            open_source(f"qdrant:{tmp_path / 'db' / 'docs'}")
    finally:
        other.close()
