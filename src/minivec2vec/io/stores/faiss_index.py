"""FAISS index files (``faiss:PATH``): flat, HNSW-flat and IVF-flat indexes, with their ids.

Reading gives the stored float32 vectors back exactly: flat and HNSW-flat indexes through
``reconstruct_n``, IVF-flat ones list by list from their inverted lists (the order of the rows
is the lists' order; each row keeps its id). Indexes that store lossy codes (PQ, SQ, LSH, ...)
are refused: their vectors cannot be given back, only approximations of them. An
``IndexIDMap`` / ``IndexIDMap2`` wrapper gives the ids; without one, a row's id is its position.
Writing builds a new index of the same type (same metric; the same M / efConstruction for
HNSW; the same nlist for IVF, its coarse quantizer trained on the mapped vectors with a fixed
seed) over the mapped vectors with the same ids.
"""
from __future__ import annotations

import builtins as _builtins
import os

import numpy as np

from ...exceptions import (InputFileError, InvalidParameterError, MissingDependencyError,
                           PathNotFoundError)
from ..._runtime.blocks import BLOCK_ROWS
from ..._runtime.validation import check_output_path
from . import StoreSource


def _faiss():
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("FAISS indexes need faiss: pip install "
                                     "'minivec2vec[faiss]'") from None
    return faiss


def _kind(faiss, index):
    """'flat', 'hnsw' or 'ivf' for the index types whose vectors can be read back."""
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    raise InputFileError(
        f"a {type(index).__name__} stores compressed codes, not the vectors themselves "
        "(product or scalar quantisation, ...): minivec2vec cannot read vectors back from it "
        "without loss; map the original vectors, or an IndexFlat / IndexHNSWFlat / "
        "IndexIVFFlat built from them")


def _file_state(path):
    """What tells a rewritten file: its inode, size and modification time."""
    state = os.stat(path)
    return state.st_ino, state.st_size, state.st_mtime_ns


class FaissIndexSource(StoreSource):
    """The vectors and ids of a FAISS index file, read in full into memory (FAISS indexes live
    in memory), float32."""

    def __init__(self, path, name="X"):
        faiss = _faiss()
        self.name, self.path = name, os.fspath(path)
        if not os.path.isfile(self.path):
            raise PathNotFoundError(f"{name}: no such FAISS index file {self.path!r}")
        before = _file_state(self.path)
        try:
            index = faiss.read_index(self.path)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise InputFileError(f"{name}: {self.path!r} is not a readable FAISS index "
                                 f"({first[:200]})") from None
        if _file_state(self.path) != before:
            # a writer replaced or extended the file during the read: what was read may mix
            # two versions of the index
            raise InputFileError(f"{name}: {self.path!r} changed while it was being read (its "
                                 "size or modification time moved); read it again once the "
                                 "writer is done")
        self.id_map = None
        self._owner = index     # owns the C++ index: the downcast views below only borrow it
        index = faiss.downcast_index(index)
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self.id_map = type(index).__name__
            ids = faiss.vector_to_array(index.id_map).astype(np.int64)
            self._id_map_view = index
            index = faiss.downcast_index(index.index)
        else:
            ids = None
        self.kind = _kind(faiss, index)
        self.index = index
        self.metric = int(index.metric_type)
        self.n_rows, self.n_features, self.dtype = int(index.ntotal), int(index.d), np.dtype(np.float32)
        if self.kind == "ivf":
            self._vectors, own_ids = self._read_inverted_lists(faiss, index)
            if ids is None:
                ids = own_ids
            else:   # IVF under an IDMap: the inverted lists hold positions into the id map
                ids = ids[own_ids]
        else:
            self._vectors = None
            if ids is None:
                ids = np.arange(self.n_rows, dtype=np.int64)
        if ids.shape[0] != self.n_rows:
            raise InputFileError(f"{name}: {self.path!r} has {ids.shape[0]} ids for "
                                 f"{self.n_rows} vectors")
        self._ids = ids

    def _read_inverted_lists(self, faiss, index):
        invlists = index.invlists
        vectors, ids = [], []
        for lst in range(index.nlist):
            size = invlists.list_size(lst)
            if size == 0:
                continue
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size)
            vectors.append(np.frombuffer(bytes(codes), dtype=np.float32).reshape(size, index.d))
            ids.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).astype(np.int64))
        if not vectors:
            return np.empty((0, index.d), np.float32), np.empty(0, np.int64)
        return np.concatenate(vectors), np.concatenate(ids)

    def ids(self):
        return self._ids

    def read(self, start, stop):
        if self._vectors is not None:
            return np.array(self._vectors[start:stop])
        if stop <= start:
            return np.empty((0, self.n_features), np.float32)
        return np.asarray(self.index.reconstruct_n(start, stop - start), dtype=np.float32)

    def fingerprint(self):
        _, size, mtime = _file_state(self.path)
        return [[os.path.abspath(self.path), size, mtime]]

    def describe(self):
        return f"FAISS {type(self.index).__name__} {os.path.abspath(self.path)}"


def open(path, name="X", column=None):  # noqa: A001 (the store interface's name)
    if column is not None:
        raise InvalidParameterError(f"{name}: a FAISS index holds one vector per row; there is "
                                    f"no column to choose (got column={column!r})")
    return FaissIndexSource(path, name)


class Writer:
    """A new index of ``source``'s type at ``path``, with the mapped vectors under the source's
    ids. FAISS indexes live in memory, so the blocks are gathered and the index is built and
    written (to ``path + '.partial'``, then renamed) at ``commit()``; it cannot resume."""

    rows_done = 0

    def __init__(self, path, source, d_out, *, identity=None, output_column=None,
                 chunk_rows=BLOCK_ROWS, seed=0):
        if output_column is not None:
            raise InvalidParameterError("output_column: a FAISS index has no columns")
        self.faiss = _faiss()
        self.path, self.source, self.d_out, self.seed = os.fspath(path), source, d_out, seed
        self.chunk_rows = chunk_rows
        self.sidecar_path = self.path + ".json"
        check_output_path(self.path, "output")
        self.mapped = np.empty((source.n_rows, d_out), dtype=np.float32)

    def write(self, start, mapped, records):
        self.mapped[start:start + mapped.shape[0]] = mapped

    def abort(self):
        self.mapped = None

    def commit(self):
        faiss, source, d_out, mapped = self.faiss, self.source, self.d_out, self.mapped
        if source.kind == "flat":
            index = faiss.IndexFlat(d_out, source.metric)
        elif source.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d_out, source.index.hnsw.nb_neighbors(1), source.metric)
            index.hnsw.efConstruction = source.index.hnsw.efConstruction
            index.hnsw.efSearch = source.index.hnsw.efSearch
        else:
            quantizer = faiss.IndexFlat(d_out, source.metric)
            index = faiss.IndexIVFFlat(quantizer, d_out, source.index.nlist, source.metric)
            index.nprobe = source.index.nprobe
            index.cp.seed = self.seed
            index.train(mapped)
        ids = source.ids()
        wrapped = index
        if source.id_map is not None:
            wrapped = getattr(faiss, source.id_map)(index)
            wrapped.add_with_ids(mapped, ids)
        elif source.kind == "ivf":
            index.add_with_ids(mapped, ids)
        else:
            index.add(mapped)
        partial = self.path + ".partial"
        try:
            faiss.write_index(wrapped, partial)
            with _builtins.open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, self.path)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
