"""Qdrant collections in local mode (``qdrant:DIR/COLLECTION``), ids and payloads kept.

``DIR`` is the storage folder of ``QdrantClient(path=DIR)``. Qdrant's local mode locks that
folder for one client at a time, so nothing else writes the collection while it is read (a
client of the same folder left open elsewhere is reported, not waited for). The vector is the
collection's only vector, or the named vector ``column``.

Writing creates a NEW collection under the name ``COLLECTION`` (in ``DIR``, which may be the
input's folder): the points' ids and payloads, every other named vector unchanged, the mapped
vector (float32) in place of the input's or, with ``output_column``, added as a new named
vector. The points are upserted chunk by chunk into a staged collection
``COLLECTION.minivec2vec-<digest>``; a journal beside it counts the rows done, so a rerun with
the same map and input resumes after the last whole chunk. When every chunk is in, the alias
``COLLECTION`` is pointed at the staged collection (Qdrant's atomic switch), so a search on
``COLLECTION`` never sees a half-written collection.

Qdrant was chosen over Chroma as the document store: its local mode is an embedded, pure-Python
client with explicit ids and payloads, and its aliases give the atomic switch a migration
needs; Chroma's embedded client pulls in an ONNX runtime and tokenizers we do not use.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os

import numpy as np

from ...exceptions import (InputFileError, InvalidParameterError, MissingDependencyError,
                           OutputPathError, PathNotFoundError)
from ..._runtime.blocks import BLOCK_ROWS
from ..files import read_json, write_json_atomic
from . import StoreSource

SCROLL_PAGE = 10000
_clients = {}       # one client per storage folder and process: local mode allows no other


def _qdrant():
    try:
        import qdrant_client
        from qdrant_client import models
    except ImportError:
        raise MissingDependencyError("Qdrant collections need qdrant-client: pip install "
                                     "'minivec2vec[qdrant]'") from None
    return qdrant_client, models


def _split(path):
    path = os.path.abspath(os.fspath(path)).rstrip(os.sep)
    return os.path.dirname(path), os.path.basename(path)


def client(directory, name="X", create=False):
    """The process's client of a local-mode storage folder (opened once, then shared)."""
    directory = os.path.abspath(directory)
    if directory in _clients:
        return _clients[directory]
    qdrant_client, _ = _qdrant()
    if not os.path.isdir(directory):
        if not create:
            raise PathNotFoundError(f"{name}: no Qdrant storage folder {directory!r}")
        parent = os.path.dirname(directory)
        if not os.path.isdir(parent):
            raise OutputPathError(f"{name}: cannot create the Qdrant storage folder "
                                  f"{directory!r}: {parent!r} does not exist")
    elif not create and not os.path.exists(os.path.join(directory, "meta.json")):
        raise InputFileError(f"{name}: {directory!r} is not a Qdrant local storage folder "
                             "(no meta.json)")
    try:
        opened = qdrant_client.QdrantClient(path=directory)
    except RuntimeError as exc:
        raise InputFileError(f"{name}: the Qdrant folder {directory!r} is open in another "
                             f"client; close it first (local mode allows one): "
                             f"{str(exc).splitlines()[0][:200]}") from None
    except (ValueError, KeyError, OSError) as exc:
        raise InputFileError(f"{name}: the Qdrant folder {directory!r} cannot be opened "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
    _clients[directory] = opened
    return opened


def close_clients():
    """Close every client this process opened (their folders are unlocked)."""
    while _clients:
        _, opened = _clients.popitem()
        opened.close()


atexit.register(close_clients)     # unlock the folders before the interpreter tears down


def _names(qdrant):
    """Collection and alias names of a client."""
    names = {c.name for c in qdrant.get_collections().collections}
    aliases = {a.alias_name: a.collection_name for a in qdrant.get_aliases().aliases}
    return names, aliases


class QdrantCollectionSource(StoreSource):
    """The points of a local-mode Qdrant collection, in id order: one vector, ids, payloads."""

    def __init__(self, path, name="X", column=None):
        _, models = _qdrant()
        self.name = name
        self.directory, self.collection = _split(path)
        self.qdrant = client(self.directory, name)
        if not self.qdrant.collection_exists(self.collection):
            raise PathNotFoundError(f"{name}: no Qdrant collection {self.collection!r} in "
                                    f"{self.directory!r}")
        vectors = self.qdrant.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, dict):
            if column is None:
                if len(vectors) != 1:
                    raise InvalidParameterError(f"{name}: the Qdrant collection "
                                                f"{self.collection!r} has named vectors "
                                                f"{sorted(vectors)}; name one (column=... / "
                                                "--column)")
                column = next(iter(vectors))
            if column not in vectors:
                raise InputFileError(f"{name}: the Qdrant collection {self.collection!r} has no "
                                     f"vector {column!r} (vectors: {sorted(vectors)})")
            params = vectors[column]
        else:
            if column is not None:
                raise InputFileError(f"{name}: the Qdrant collection {self.collection!r} has "
                                     f"one unnamed vector, no vector {column!r}")
            params = vectors
        if getattr(params, "multivector_config", None) is not None:
            raise InputFileError(f"{name}: vector {column!r} of {self.collection!r} is a "
                                 "multivector; minivec2vec maps one vector per point")
        self.vectors_config, self.column, self.params = vectors, column, params
        self.n_features, self.dtype = int(params.size), np.dtype(np.float32)
        self._ids = self._scroll_ids()
        self.n_rows = len(self._ids)

    def _scroll_ids(self):
        ids, offset = [], None
        while True:
            points, offset = self.qdrant.scroll(self.collection, limit=SCROLL_PAGE, offset=offset,
                                                with_payload=False, with_vectors=False)
            ids.extend(p.id for p in points)
            if offset is None:
                return ids

    def ids(self):
        return list(self._ids)

    def _retrieve(self, start, stop, payload):
        wanted = self._ids[start:stop]
        points = self.qdrant.retrieve(self.collection, wanted, with_payload=payload,
                                      with_vectors=True)
        by_id = {p.id: p for p in points}
        if len(by_id) != len(wanted) or any(i not in by_id for i in wanted):
            raise InputFileError(f"{self.name}: points of {self.collection!r} went missing "
                                 f"while it was read (rows {start}-{stop}); the collection "
                                 "changed")
        return [by_id[i] for i in wanted]

    def _vectors(self, points):
        rows = [p.vector[self.column] if self.column is not None else p.vector for p in points]
        return np.asarray(rows, dtype=np.float32).reshape(len(points), self.n_features)

    def read(self, start, stop):
        if stop <= start:
            return np.empty((0, self.n_features), np.float32)
        return self._vectors(self._retrieve(start, stop, False))

    def block_and_records(self, start, stop):
        points = self._retrieve(start, stop, True)
        return self._vectors(points), points

    def fingerprint(self):
        digest = hashlib.sha256(json.dumps([str(i) for i in self._ids]).encode()).hexdigest()
        return [[self.directory, self.collection, self.column, self.n_rows, digest]]

    def describe(self):
        vector = f", vector {self.column!r}" if self.column is not None else ""
        return f"Qdrant collection {self.collection!r} in {self.directory}{vector}"


def open(path, name="X", column=None):  # noqa: A001 (the store interface's name)
    return QdrantCollectionSource(path, name, column)


class Writer:
    """A new collection with the input's points and the mapped vectors, behind an alias; see
    the module docstring."""

    def __init__(self, path, source, d_out, *, identity, output_column=None, chunk_rows=BLOCK_ROWS):
        _, self.models = _qdrant()
        models = self.models
        self.directory, self.collection = _split(path)
        self.qdrant = client(self.directory, "output", create=True)
        names, aliases = _names(self.qdrant)
        if self.collection in names or self.collection in aliases:
            kind = "a collection" if self.collection in names else "an alias"
            raise OutputPathError(f"output: {self.collection!r} already exists in "
                                  f"{self.directory!r} (as {kind}); remove it or name a new "
                                  "collection")
        self.source, self.d_out = source, d_out
        target = output_column if output_column is not None else source.column
        if isinstance(source.vectors_config, dict):
            if output_column is not None and output_column in source.vectors_config:
                raise InvalidParameterError(f"output_column: the input already has a vector "
                                            f"{output_column!r}; name a new one, or omit it to "
                                            f"replace {source.column!r}")
            config = dict(source.vectors_config)
        elif target is None:
            config = None
        else:   # an unnamed vector kept beside a new named one cannot be: both become named
            raise InvalidParameterError("output_column: the input collection has one unnamed "
                                        "vector; a collection cannot hold it beside a named "
                                        "one, so omit output_column (the vector is replaced)")
        mapped_params = models.VectorParams(size=d_out, distance=source.params.distance)
        if config is None:
            self.vectors_config = mapped_params
        else:
            config[target] = mapped_params
            self.vectors_config = config
        self.target = target
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        self.staged = f"{self.collection}.minivec2vec-{digest}"
        self.journal_path = os.path.join(self.directory, f"{self.collection}.minivec2vec-partial.json")
        self.sidecar_path = os.path.join(self.directory, f"{self.collection}.minivec2vec.json")
        self.rows_done, self.chunk_rows = 0, chunk_rows
        journal = read_json(self.journal_path)
        if (journal is not None and identity["input"] is not None
                and journal.get("staged") == self.staged and self.staged in names):
            self.rows_done = int(journal.get("rows_done", 0))
            self.chunk_rows = int(journal.get("chunk_rows", chunk_rows)) or chunk_rows
        else:
            if self.staged in names:
                self.qdrant.delete_collection(self.staged)
            self.qdrant.create_collection(self.staged, vectors_config=self.vectors_config)
        self.journal = dict(identity, staged=self.staged, chunk_rows=self.chunk_rows,
                            rows_done=self.rows_done)
        write_json_atomic(self.journal_path, self.journal)

    def write(self, start, mapped, points):
        models = self.models
        rows = np.asarray(mapped, dtype=np.float32).tolist()
        if isinstance(self.vectors_config, dict):   # a batch holds one list per named vector
            vectors = {name: [p.vector[name] for p in points]
                       for name in self.vectors_config if name != self.target}
            vectors[self.target] = rows
        else:
            vectors = rows
        self.qdrant.upsert(self.staged, points=models.Batch(
            ids=[p.id for p in points], vectors=vectors, payloads=[p.payload for p in points]),
            wait=True)
        self.journal["rows_done"] = start + len(points)
        write_json_atomic(self.journal_path, self.journal)

    def abort(self):
        if self.qdrant.collection_exists(self.staged):
            self.qdrant.delete_collection(self.staged)
        if os.path.exists(self.journal_path):
            os.unlink(self.journal_path)

    def commit(self):
        models = self.models
        self.qdrant.update_collection_aliases(change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name=self.staged, alias_name=self.collection))])
        os.unlink(self.journal_path)

