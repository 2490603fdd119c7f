"""Input adapters: one interface over in-memory arrays, ``.npy`` files and shards, and Parquet.

Every source exposes ``n_rows``, ``n_features``, ``dtype``, ``blocks(block_rows)`` (consecutive
row blocks, in order, with a fixed size whatever the storage: shards are stitched together) and
``take(sorted_rows)``. Files are read with plain ``read`` calls into a reused buffer, never
memory-mapped: pages of a mapped file count in the process's RSS once touched, so streaming a
3 GB memory-mapped file would grow RSS by 3 GB.

:func:`scan` is the single streaming pass the fit needs per side: it checks every row for
NaN/Inf, sums the columns (float64, in fixed sub-blocks of :data:`SUM_ROWS` rows so the mean does
not depend on the block size) and gathers the rows chosen for the sample, all at once.
"""
from __future__ import annotations

import glob
import os
from typing import Sequence

import numpy as np

from ..exceptions import (DimensionMismatchError, DtypeError, InputFileError,
                          MissingDependencyError, NonFiniteError, PathNotFoundError, ShapeError)
from .._runtime.blocks import PARQUET_BATCH_ROWS, SUM_ROWS
from .._runtime.validation import check_embeddings, check_rows
from .embedding_source import EmbeddingSource

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------- arrays
class ArraySource(EmbeddingSource):
    """An in-memory numpy array (or any 2-D float array)."""

    def __init__(self, X, name="X"):
        X = check_embeddings(X, name, check_finite=False)
        self.X, self.name = X, name
        self.n_rows, self.n_features = X.shape
        self.dtype = X.dtype

    def blocks(self, block_rows, first=0):
        for start in range(first, self.n_rows, block_rows):
            yield start, self.X[start:start + block_rows]

    def read(self, start, stop):
        return np.array(self.X[start:stop])

    def take(self, rows):
        return self.X[np.asarray(rows, dtype=np.int64)]

    def describe(self):
        return f"{self.name}: in-memory array {self.X.shape} {self.dtype}"


# ---------------------------------------------------------------------------- .npy files
def _npy_header(path, name):
    """(shape, dtype, data offset) of a .npy file, refusing what cannot be streamed."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except ValueError as exc:
        raise InputFileError(f"{name}: {path!r} is not a readable .npy array ({exc})") from None
    if dtype.newbyteorder("=") not in _FLOAT_DTYPES or not dtype.isnative:
        raise DtypeError(f"{name}: {path!r} holds dtype {dtype}; expected native float16, "
                         "float32 or float64")
    if len(shape) != 2:
        raise ShapeError(f"{name}: {path!r} holds a {len(shape)}-D array {shape}; expected 2-D")
    if fortran and shape[0] > 1 and shape[1] > 1:
        raise InputFileError(f"{name}: {path!r} is stored in Fortran order; rows cannot be "
                             "streamed (re-save it C-ordered)")
    expected = offset + shape[0] * shape[1] * dtype.itemsize
    if os.path.getsize(path) < expected:
        raise InputFileError(f"{name}: {path!r} is truncated ({os.path.getsize(path)} bytes, "
                             f"the header promises {expected})")
    return shape, dtype, offset


class NpyShardsSource(EmbeddingSource):
    """One or more ``.npy`` files whose rows are concatenated in the given order."""

    def __init__(self, paths: Sequence[str], name="X"):
        if not paths:
            raise InputFileError(f"{name}: no .npy files given")
        self.name = name
        self.paths = [os.fspath(p) for p in paths]
        self._starts, self._offsets = [], []
        n, d, dtype = 0, None, None
        for path in self.paths:
            if not os.path.isfile(path):
                raise PathNotFoundError(f"{name}: no such file {path!r}")
            shape, dt, offset = _npy_header(path, name)
            if d is None:
                d, dtype = shape[1], dt
            elif shape[1] != d or dt != dtype:
                kind = DimensionMismatchError if shape[1] != d else InputFileError
                raise kind(f"{name}: shard {path!r} is {shape} {dt}, the first shard has "
                           f"{d} features of {dtype}")
            self._starts.append(n)
            self._offsets.append(offset)
            n += shape[0]
        if d == 0:
            raise ShapeError(f"{name}: has 0 features")
        self._starts.append(n)
        self.n_rows, self.n_features, self.dtype = n, d, dtype

    def _read_into(self, start, out):
        """Fill ``out`` (rows start .. start + len(out)) from the shards with pread."""
        row_bytes = self.row_bytes()
        stop = start + out.shape[0]
        flat = out.reshape(-1).view(np.uint8)
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            shard_stop = min(stop, self._starts[shard + 1])
            if shard_stop > pos:
                byte_start = (pos - start) * row_bytes
                want = (shard_stop - pos) * row_bytes
                with open(self.paths[shard], "rb", buffering=0) as fh:
                    fh.seek(self._offsets[shard] + (pos - self._starts[shard]) * row_bytes)
                    view = memoryview(flat[byte_start:byte_start + want])
                    got = 0
                    while got < want:
                        k = fh.readinto(view[got:])
                        if not k:
                            raise InputFileError(f"{self.name}: {self.paths[shard]!r} ended early "
                                                 "(file truncated while reading?)")
                        got += k
                pos = shard_stop
            shard += 1
        return out

    def blocks(self, block_rows, first=0):
        buffer = np.empty((max(0, min(block_rows, self.n_rows - first)), self.n_features),
                          dtype=self.dtype)
        for start in range(first, self.n_rows, block_rows):
            block = buffer[:min(block_rows, self.n_rows - start)]
            yield start, self._read_into(start, block)

    def read(self, start, stop):
        return self._read_into(start, np.empty((stop - start, self.n_features), self.dtype))

    def fingerprint(self):
        return [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns]
                for p in self.paths]

    def describe(self):
        if len(self.paths) == 1:
            return os.path.abspath(self.paths[0])
        return f"{len(self.paths)} .npy shards in {os.path.dirname(os.path.abspath(self.paths[0]))}"


# ---------------------------------------------------------------------------- Parquet
def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("reading Parquet needs pyarrow: pip install 'minivec2vec[parquet]'") from None
    return pq


class ParquetSource(EmbeddingSource):
    """Parquet files with an embedding column of fixed-size lists of float16/32/64."""

    def __init__(self, paths: Sequence[str], column=None, name="X"):
        pq = _pyarrow()
        import pyarrow as pa
        self.name = name
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise InputFileError(f"{name}: no Parquet files given")
        self._files, self._starts = [], []
        n, d, dtype = 0, None, None
        for path in self.paths:
            if not os.path.isfile(path):
                raise PathNotFoundError(f"{name}: no such file {path!r}")
            try:
                pf = pq.ParquetFile(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputFileError(f"{name}: {path!r} is not a readable Parquet file ({exc})") from None
            schema = pf.schema_arrow
            if column is None:
                candidates = [f.name for f in schema if pa.types.is_fixed_size_list(f.type)]
                if len(candidates) != 1:
                    raise InputFileError(f"{name}: {path!r} has {len(candidates)} fixed-size list "
                                         f"columns {candidates}; name the embedding column")
                column = candidates[0]
            if column not in schema.names:
                raise InputFileError(f"{name}: {path!r} has no column {column!r} (columns: {schema.names})")
            ftype = schema.field(column).type
            if not pa.types.is_fixed_size_list(ftype):
                raise DtypeError(f"{name}: column {column!r} of {path!r} is {ftype}; expected a "
                                 "fixed-size list of floats (e.g. fixed_size_list<float>[768])")
            dt = np.dtype(ftype.value_type.to_pandas_dtype())
            if dt not in _FLOAT_DTYPES:
                raise DtypeError(f"{name}: column {column!r} holds {ftype.value_type}; expected "
                                 "float16, float32 or float64")
            if d is None:
                d, dtype = ftype.list_size, dt
            elif ftype.list_size != d or dt != dtype:
                kind = DimensionMismatchError if ftype.list_size != d else InputFileError
                raise kind(f"{name}: {path!r} has {ftype}, the first file {d} x {dtype}")
            self._files.append(pf)
            self._starts.append(n)
            n += pf.metadata.num_rows
        if d == 0:
            raise ShapeError(f"{name}: has 0 features")
        self._starts.append(n)
        self.column = column
        self.n_rows, self.n_features, self.dtype = n, d, dtype

    def _to_numpy(self, array, first_row):
        import pyarrow as pa
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if array.null_count:
            bad = first_row + int(np.flatnonzero(np.asarray(array.is_null()))[0])
            raise NonFiniteError(f"{self.name}: row {bad} of column {self.column!r} is null")
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(array), self.n_features)

    def _batches(self):
        """(start, numpy rows) of each record batch, in order, across the files."""
        for pf, start in zip(self._files, self._starts):
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[self.column]):
                yield start, self._to_numpy(batch.column(0), start)
                start += batch.num_rows

    def blocks(self, block_rows, first=0):
        buffer = np.empty((max(0, min(block_rows, self.n_rows - first)), self.n_features),
                          dtype=self.dtype)
        filled, block_start = 0, first
        for batch_start, rows in self._batches():
            if batch_start + rows.shape[0] <= first:
                continue    # before the first row asked for: read (Parquet cannot seek) and skip
            pos = max(0, first - batch_start)
            while pos < rows.shape[0]:
                take = min(buffer.shape[0] - filled, rows.shape[0] - pos)
                buffer[filled:filled + take] = rows[pos:pos + take]
                filled += take
                pos += take
                if filled == buffer.shape[0] or block_start + filled == self.n_rows:
                    yield block_start, buffer[:filled]
                    block_start += filled
                    filled = 0

    def blocks_with_columns(self, block_rows, first=0):
        """(start, embedding rows, pyarrow Table of ALL columns of those rows) per block, in
        order, the blocks cut as :meth:`blocks` cuts them: the other columns travel with their
        vectors (Parquet output keeps ids and metadata)."""
        import pyarrow as pa
        pending, filled, block_start = [], 0, first
        target = min(block_rows, self.n_rows - first)
        for pf, start in zip(self._files, self._starts):
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                if start + batch.num_rows <= first:
                    start += batch.num_rows
                    continue    # Parquet cannot seek: read and skip
                pos = max(0, first - start)
                while pos < batch.num_rows:
                    take = min(target - filled, batch.num_rows - pos)
                    pending.append(batch.slice(pos, take))
                    filled += take
                    pos += take
                    if filled == target:
                        table = pa.Table.from_batches(pending).combine_chunks()
                        rows = self._to_numpy(table.column(self.column), block_start)
                        yield block_start, rows, table
                        block_start += filled
                        pending, filled = [], 0
                        target = min(block_rows, self.n_rows - block_start)
                start += batch.num_rows

    def read(self, start, stop):
        out = np.empty((stop - start, self.n_features), dtype=self.dtype)
        pos = start
        while pos < stop:
            f = int(np.searchsorted(self._starts, pos, side="right")) - 1
            pf, file_start = self._files[f], self._starts[f]
            group_start = file_start
            for g in range(pf.metadata.num_row_groups):
                group_rows = pf.metadata.row_group(g).num_rows
                if group_start + group_rows > pos:
                    break
                group_start += group_rows
            rows = self._to_numpy(pf.read_row_group(g, columns=[self.column]).column(0),
                                  group_start)
            lo = pos - group_start
            hi = min(stop - group_start, rows.shape[0])
            out[pos - start:pos - start + hi - lo] = rows[lo:hi]
            pos += hi - lo
        return out

    def fingerprint(self):
        return [[os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns, self.column]
                for p in self.paths]

    def describe(self):
        where = (os.path.abspath(self.paths[0]) if len(self.paths) == 1
                 else f"{len(self.paths)} Parquet files in "
                      f"{os.path.dirname(os.path.abspath(self.paths[0]))}")
        return f"{where} (column {self.column!r})"


# ---------------------------------------------------------------------------- dispatch
def _is_path(x):
    return isinstance(x, (str, os.PathLike))


def open_source(X, name="X", column=None) -> EmbeddingSource:
    """The source for X: an :class:`EmbeddingSource` (returned as is), a numpy array (a
    memory-mapped ``.npy`` is read from its file, not through the mapping), a path to a ``.npy``
    or ``.parquet`` file, a directory of ``.npy`` or ``.parquet`` shards (sorted by name), or a
    list of such paths, or a vector store named ``SCHEME:PATH`` (:mod:`minivec2vec.io.stores`,
    e.g. ``faiss:vectors.index``, ``lance:db/docs.lance``, ``qdrant:db/docs``). ``column`` names
    the embedding column of a Parquet file or Lance table, or the named vector of a Qdrant
    collection (default: the only one there is)."""
    if isinstance(X, EmbeddingSource):
        return X
    from . import stores
    if stores.parse(X) is not None:     # a vector store, e.g. "faiss:vectors.index"
        return stores.open_store(X, name, column=column)
    if isinstance(X, np.memmap) and getattr(X, "filename", None) and X.ndim == 2:
        whole = _whole_npy_memmap(X)
        if whole is not None:
            return NpyShardsSource([whole], name)
    if _is_path(X):
        path = os.fspath(X)
        if os.path.isdir(path):
            files = sorted(glob.glob(os.path.join(path, "*.npy")))
            parquet = sorted(glob.glob(os.path.join(path, "*.parquet")))
            if files and parquet:
                raise InputFileError(f"{name}: directory {path!r} holds both .npy and .parquet files")
            if not files and not parquet:
                raise InputFileError(f"{name}: directory {path!r} holds no .npy or .parquet files")
            return NpyShardsSource(files, name) if files else ParquetSource(parquet, column, name)
        paths = [path]
    elif isinstance(X, (list, tuple)) and X and all(_is_path(p) for p in X):
        paths = [os.fspath(p) for p in X]
    else:
        return ArraySource(X, name)
    for p in paths:
        if not os.path.exists(p):
            raise PathNotFoundError(f"{name}: no such file {p!r}")
    if all(p.endswith(".parquet") or p.endswith(".pq") for p in paths):
        return ParquetSource(paths, column, name)
    if any(p.endswith(".parquet") or p.endswith(".pq") for p in paths):
        raise InputFileError(f"{name}: mixes Parquet and .npy files")
    return NpyShardsSource(paths, name)


def _whole_npy_memmap(X):
    """The .npy path behind a C-ordered memmap that covers the whole array of its file."""
    path = os.fspath(X.filename)
    if not (path.endswith(".npy") and X.flags.c_contiguous and os.path.isfile(path)):
        return None
    try:
        shape, dtype, offset = _npy_header(path, "X")
    except (ValueError, TypeError):
        return None
    if tuple(shape) == X.shape and dtype == X.dtype and offset == X.offset:
        return path
    return None


# ---------------------------------------------------------------------------- one pass
def scan(source: EmbeddingSource, block_rows: int, sample=None, gather_dtype=np.float32,
         check_finite=True, reject_zero_rows=False, on_rows=None):
    """One streaming pass over ``source``: NaN/Inf check of every row (and, with
    ``reject_zero_rows``, the all-zero check), the column mean
    (float64) and, when ``sample`` (sorted row indices) is given, those rows gathered as a new
    ``gather_dtype`` array. Returns (mean, gathered or None). ``on_rows`` (optional) is called
    with the row count of each block read.

    ``block_rows`` is rounded down to a multiple of :data:`SUM_ROWS` (at least one), so the
    mean is bit-identical whatever the block size, the storage or the sharding.
    """
    block_rows = max(SUM_ROWS, block_rows - block_rows % SUM_ROWS)
    if source.n_rows == 0:
        raise ShapeError(f"{source.name}: has 0 rows")
    total = np.zeros(source.n_features, dtype=np.float64)
    gathered = None
    if sample is not None:
        sample = np.asarray(sample, dtype=np.int64)
        gathered = np.empty((sample.shape[0], source.n_features), dtype=gather_dtype)
    done = 0
    for start, block in source.blocks(block_rows):
        check_rows(block, source.name, finite=check_finite, nonzero=reject_zero_rows,
                   row_offset=start)
        for s in range(0, block.shape[0], SUM_ROWS):
            total += block[s:s + SUM_ROWS].sum(axis=0, dtype=np.float64)
        if sample is not None:
            lo, hi = np.searchsorted(sample, [start, start + block.shape[0]])
            gathered[lo:hi] = block[sample[lo:hi] - start]
        done += block.shape[0]
        if on_rows is not None:
            on_rows(block.shape[0])
    if done != source.n_rows:
        raise InputFileError(f"{source.name}: read {done} rows, expected {source.n_rows}")
    return total / source.n_rows, gathered
