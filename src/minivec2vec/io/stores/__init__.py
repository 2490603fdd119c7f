"""Vector stores as inputs of ``fit`` / ``apply`` and outputs of ``apply``.

A store is named by a URI-like string ``SCHEME:PATH``:

* ``faiss:vectors.index``: a FAISS index file (:mod:`.faiss_index`);
* ``lance:db/docs.lance``: a LanceDB table, the dataset directory (:mod:`.lance_table`);
* ``qdrant:db/docs``: a Qdrant collection in local mode, ``QdrantClient(path="db")``
  (:mod:`.qdrant_collection`).

Each store is one module of this package with

* ``open(path, name, column=None)``: a source, an
  :class:`minivec2vec.io.embedding_source.EmbeddingSource`
  that also gives each row's id (``ids()``) and yields, with each block of vectors, the
  store's own record of those rows (``blocks_with_records(block_rows, first)`` gives
  ``(start, vectors, records)``; records are ``None`` when the ids are all there is, a pyarrow
  table of every column for Lance, ids and payloads for Qdrant);
* ``Writer(path, source, d_out, identity=..., output_column=..., chunk_rows=...)``: a NEW store
  of the source's kind, fed the mapped blocks in order with ``write(start, mapped, records)``
  and made visible by ``commit()`` (a rename, or an alias switch), so a failure never leaves a
  half-written store under the output's name. ``rows_done`` and ``chunk_rows`` say where a
  rerun with the same ``identity`` resumes (0 when the store cannot resume); ``abort()``
  removes what was staged; ``sidecar_path`` is where the run's JSON record goes.

Adding a store is adding such a module and a line to ``_SCHEMES``.
"""
from __future__ import annotations

import importlib
import os

from ...exceptions import InvalidParameterError
from ..embedding_source import EmbeddingSource

_SCHEMES = {"faiss": "faiss_index", "lance": "lance_table", "qdrant": "qdrant_collection"}


class StoreSource(EmbeddingSource):
    """What the store sources share: blocks cut from ``read``, and blocks with their records
    (``None`` unless the store overrides :meth:`block_and_records`)."""

    def blocks(self, block_rows, first=0):
        for start in range(first, self.n_rows, block_rows):
            yield start, self.read(start, min(start + block_rows, self.n_rows))

    def blocks_with_records(self, block_rows, first=0):
        for start in range(first, self.n_rows, block_rows):
            yield (start, *self.block_and_records(start, min(start + block_rows, self.n_rows)))

    def block_and_records(self, start, stop):
        """(vectors, records) of rows [start, stop)."""
        return self.read(start, stop), None


def parse(uri):
    """(scheme, path) when ``uri`` names a store, else None."""
    if not isinstance(uri, str) or ":" not in uri:
        return None
    scheme, _, path = uri.partition(":")
    if scheme not in _SCHEMES:
        return None
    if not path:
        raise InvalidParameterError(f"{uri!r}: a store needs a path after '{scheme}:'")
    return scheme, os.path.expanduser(path)


def module(scheme):
    return importlib.import_module(f".{_SCHEMES[scheme]}", __name__)


def open_store(uri, name="X", column=None):
    scheme, path = parse(uri)
    return module(scheme).open(path, name, column=column)
