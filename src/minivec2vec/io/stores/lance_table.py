"""LanceDB tables (``lance:DB/TABLE.lance``): a vector column read with every other column.

``PATH`` is the table's dataset directory, ``DB/TABLE.lance``, where ``DB`` is the directory
given to ``lancedb.connect`` (``lance:DB/TABLE`` names the same table). The source reads one
version of the table, the latest when it is opened: rows committed by a writer while the
table is read are not seen, and a version that disappears (compacted away, the table
replaced) stops the read with an error instead of mixing versions. The embedding column is the
only fixed-size list of floats unless ``column`` names it.

Writing creates a NEW table: every column of the input in order, the embedding column replaced
by the mapped vectors (float32) or, with ``output_column``, the mapped vectors added as a new
last column. The table is staged as ``DB/TABLE.partial.lance``, one commit per chunk, so a rerun
with the same map and input resumes after the last committed chunk, and the staged directory is
renamed onto ``DB/TABLE.lance`` when complete.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from ...exceptions import (DtypeError, InputFileError, InvalidParameterError,
                           MissingDependencyError, NonFiniteError, OutputPathError,
                           PathNotFoundError)
from ..._runtime.blocks import BLOCK_ROWS
from ..._runtime.validation import check_output_path
from ..files import read_json, write_json_atomic
from . import StoreSource

SUFFIX = ".lance"


def _lancedb():
    try:
        import lancedb
    except ImportError:
        raise MissingDependencyError("LanceDB tables need lancedb: pip install "
                                     "'minivec2vec[lance]'") from None
    return lancedb


def _split(path):
    """(database directory, table name, dataset directory) of a ``lance:`` path."""
    path = os.path.abspath(os.fspath(path)).rstrip(os.sep)
    directory = path if path.endswith(SUFFIX) else path + SUFFIX
    return os.path.dirname(directory), os.path.basename(directory)[:-len(SUFFIX)], directory


def _open_table(db_dir, table_name, name):
    lancedb = _lancedb()
    try:
        return lancedb.connect(db_dir).open_table(table_name)
    except (ValueError, FileNotFoundError) as exc:
        raise PathNotFoundError(f"{name}: no LanceDB table {table_name!r} in {db_dir!r} "
                                f"({str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:  # lancedb raises its own error types for unreadable tables
        raise InputFileError(f"{name}: the LanceDB table {table_name!r} in {db_dir!r} cannot "
                             f"be opened ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def _vector_columns(schema):
    import pyarrow as pa
    return [f.name for f in schema if pa.types.is_fixed_size_list(f.type)
            and pa.types.is_floating(f.type.value_type)]


class LanceTableSource(StoreSource):
    """One version of a LanceDB table's embedding column, read by row offset."""

    def __init__(self, path, name="X", column=None):
        self.name = name
        self.db_dir, self.table_name, self.directory = _split(path)
        if not os.path.isdir(self.directory):
            raise PathNotFoundError(f"{name}: no LanceDB table at {self.directory!r}")
        table = _open_table(self.db_dir, self.table_name, name)
        self.version = int(table.version)
        table.checkout(self.version)    # pinned: later commits by others are not read
        self.table = table
        schema = table.schema
        if column is None:
            candidates = _vector_columns(schema)
            if not candidates:
                raise InputFileError(f"{name}: the LanceDB table {self.directory!r} has no "
                                     f"fixed-size list column of floats (columns: "
                                     f"{schema.names})")
            if len(candidates) > 1:
                raise InvalidParameterError(f"{name}: the LanceDB table {self.directory!r} has "
                                            f"several vector columns {candidates}; name one "
                                            f"(column=... / --column)")
            column = candidates[0]
        if column not in schema.names:
            raise InputFileError(f"{name}: the LanceDB table {self.directory!r} has no column "
                                 f"{column!r} (columns: {schema.names})")
        ftype = schema.field(column).type
        import pyarrow as pa
        if not (pa.types.is_fixed_size_list(ftype) and pa.types.is_floating(ftype.value_type)):
            raise DtypeError(f"{name}: column {column!r} of {self.directory!r} is {ftype}; "
                             "expected a fixed-size list of float16/32/64")
        self.column, self.schema = column, schema
        self.n_rows = int(table.count_rows())
        self.n_features = int(ftype.list_size)
        self.dtype = np.dtype(ftype.value_type.to_pandas_dtype())

    def _take(self, start, stop, columns):
        try:
            query = self.table.take_offsets(list(range(start, stop)))
            return (query.select(columns) if columns is not None else query).to_arrow()
        except Exception as exc:
            raise InputFileError(f"{self.name}: rows {start}-{stop} of version {self.version} "
                                 f"of {self.directory!r} cannot be read (the table changed "
                                 f"while it was read?): {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
                                 ) from None

    def _to_numpy(self, array, first_row):
        if array.null_count:
            bad = first_row + int(np.flatnonzero(
                np.asarray(array.is_null().to_numpy(zero_copy_only=False)))[0])
            raise NonFiniteError(f"{self.name}: row {bad} of column {self.column!r} is null")
        array = array.combine_chunks() if hasattr(array, "combine_chunks") else array
        values = array.flatten().to_numpy(zero_copy_only=False)
        return values.astype(self.dtype, copy=False).reshape(-1, self.n_features)

    def read(self, start, stop):
        if stop <= start:
            return np.empty((0, self.n_features), self.dtype)
        return self._to_numpy(self._take(start, stop, [self.column]).column(0), start)

    def block_and_records(self, start, stop):
        records = self._take(start, stop, None)
        return self._to_numpy(records.column(self.column), start), records

    def ids(self):
        return np.arange(self.n_rows, dtype=np.int64)   # rows are addressed by offset

    def fingerprint(self):
        return [[self.directory, self.version, self.n_rows]]

    def describe(self):
        return f"LanceDB table {self.directory} (version {self.version}, column {self.column!r})"


def open(path, name="X", column=None):  # noqa: A001 (the store interface's name)
    return LanceTableSource(path, name, column)


class Writer:
    """A new LanceDB table with the input's columns and the mapped vectors; see the module
    docstring."""

    def __init__(self, path, source, d_out, *, identity, output_column=None, chunk_rows=BLOCK_ROWS):
        import pyarrow as pa
        self.lancedb = _lancedb()
        self.db_dir, self.table_name, self.directory = _split(path)
        check_output_path(os.path.join(self.db_dir, "probe"), "output")
        if os.path.exists(self.directory):
            raise OutputPathError(f"output: the LanceDB table {self.directory!r} already "
                                  "exists; remove it or name a new table")
        self.column = source.column
        target = output_column or source.column
        if target != source.column and target in source.schema.names:
            raise InvalidParameterError(f"output_column: the input already has a column "
                                        f"{target!r}; name a new one, or omit it to replace "
                                        f"{source.column!r}")
        self.target = target
        vector = pa.field(target, pa.list_(pa.float32(), d_out))
        schema = source.schema.remove_metadata()
        self.schema = (schema.set(schema.get_field_index(target), vector)
                       if target == source.column else schema.append(vector))
        self.d_out = d_out
        self.staged_name = self.table_name + ".partial"     # staged in DB/TABLE.partial.lance
        self.staged = os.path.join(self.db_dir, self.staged_name + SUFFIX)
        self.journal_path = self.directory + ".partial.json"
        self.sidecar_path = self.directory + ".json"
        self.identity = identity
        self.rows_done, self.chunk_rows = 0, chunk_rows
        journal = read_json(self.journal_path)
        if (journal is not None and identity["input"] is not None
                and {k: journal.get(k) for k in identity} == identity
                and os.path.isdir(self.staged)):
            try:
                done = int(self.lancedb.connect(self.db_dir).open_table(
                    self.staged_name).count_rows())
            except Exception:
                done = -1
            chunk = int(journal.get("chunk_rows", 0))
            if chunk > 0 and done >= 0 and done % chunk == 0 and done <= identity["rows"]:
                self.rows_done, self.chunk_rows = done, chunk
        if self.rows_done == 0:
            self._clear()
        self.table = None
        write_json_atomic(self.journal_path, dict(identity, chunk_rows=self.chunk_rows))

    def _clear(self):
        if os.path.isdir(self.staged):
            shutil.rmtree(self.staged)

    def write(self, start, mapped, records):
        import pyarrow as pa
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(
            mapped, dtype=np.float32).reshape(-1)), self.d_out)
        records = records.replace_schema_metadata(None)
        if self.target == self.column:
            records = records.set_column(records.schema.get_field_index(self.column),
                                         self.target, vectors)
        else:
            records = records.append_column(self.target, vectors)
        records = records.select(self.schema.names).cast(self.schema)
        if self.table is None:
            db = self.lancedb.connect(self.db_dir)
            if start == 0:
                self.table = db.create_table(self.staged_name, schema=self.schema)
            else:
                self.table = db.open_table(self.staged_name)
        self.table.add(records)     # one commit: a killed run resumes after the last one

    def abort(self):
        self._clear()
        if os.path.exists(self.journal_path):
            os.unlink(self.journal_path)

    def commit(self):
        if self.table is None:      # no rows to write (or all written before a resume)
            db = self.lancedb.connect(self.db_dir)
            if not os.path.isdir(self.staged):
                db.create_table(self.staged_name, schema=self.schema)
        os.rename(self.staged, self.directory)
        os.unlink(self.journal_path)

