"""Streaming apply for ETL: map any input source to a ``.npy`` file, chunk by chunk, resumably.

The output is written to ``<output>.partial`` (a complete ``.npy`` header first, then the rows)
with plain ``pwrite`` calls, never through a memory mapping (mapped pages would count in RSS).
After each chunk is written and synced, ``<output>.partial.json`` (the journal) records how many
rows are complete. A rerun with the same map, input, options and chunk size continues after the
last complete chunk; each chunk is computed by the same code on the same rows, so the final file
is byte-identical to an uninterrupted run. When every row is written the sidecar
``<output>.json`` (map checksum, input, rows, dtype) is written, then the partial file is renamed
onto ``<output>`` atomically and the journal removed: ``<output>`` exists only when complete.
A run stopped by bad input rows (NaN/Inf, a row equal to the mean) removes its partial file; a run
stopped by anything else (kill, Ctrl-C, full disk) leaves it for the rerun to resume.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

from ..exceptions import (InputFileError, InvalidParameterError, MemoryLimitError, NonFiniteError,
                          ZeroRowError)
from .files import write_json_atomic
from .._runtime.threads import resolve_n_threads
from .._runtime.validation import check_output_path
from .._runtime.memory import chunk_rows as plan_chunk_rows, working_budget
from .sources import open_source

SIDECAR_FORMAT = "minivec2vec-apply"


def file_sha256(path, block=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(block), b""):
            digest.update(piece)
    return digest.hexdigest()


def _npy_header_bytes(shape, dtype):
    """The exact header ``np.save`` would write for a C-ordered array of this shape."""
    import io
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def apply_map(model, X, output, *, map_path=None, add_mean=False, memory_limit=None,
              chunk_rows=None, progress=True, column=None, n_threads=None, inverse=False,
              output_column=None, _after_chunk=None):
    """Map every row of X (any input :func:`~minivec2vec.io.sources.open_source` accepts) with
    ``model`` into the float32 ``.npy`` file ``output`` (or, when ``output`` ends in
    ``.parquet``, a Parquet file with one row group per chunk), streaming chunk by chunk.

    Parameters
    ----------
    model : fitted MiniVec2Vec, or the path of a map file (then ``map_path`` is that path)
    X : input rows of space A
    output : path of the ``.npy`` file to write
    map_path : the map file's path, recorded with its SHA-256 in the sidecar and the journal
    add_mean : as in :meth:`MiniVec2Vec.transform`
    inverse : map B rows into A (:meth:`MiniVec2Vec.inverse_transform`) instead of A into B
    output_column : with a ``.parquet`` output, the column that receives the mapped vectors
        (default: the input's embedding column, replaced in place); every other column of a
        Parquet input is carried through unchanged and in order
    memory_limit : bytes or e.g. "2GB"; the chunk size is planned from it
    chunk_rows : rows per chunk (default: the planned size, at most 65,536); a smaller value
        means finer resume points
    progress : show a tqdm progress bar on stderr
    column : Parquet embedding column (default: the only fixed-size list column)
    n_threads : threads of the per-chunk product (default: the model's ``n_threads``); the
        output bytes are the same whatever the thread count and chunk size

    Returns the sidecar dictionary (also written to ``output + ".json"``).
    """
    from ..model import MiniVec2Vec
    if isinstance(model, (str, os.PathLike)):
        map_path = os.fspath(model)
        model = MiniVec2Vec.load(map_path)
    model._check_mappable(add_mean, inverse)
    n_threads = resolve_n_threads(model.n_threads if n_threads is None else n_threads)
    source = open_source(X, "input", column=column)
    model._check_input_features(source, inverse)
    output = os.fspath(output)
    from . import stores
    if stores.parse(output) is not None:
        return _apply_to_store(model, source, output, add_mean=add_mean,
                               memory_limit=memory_limit, chunk_rows=chunk_rows,
                               progress=progress, n_threads=n_threads, inverse=inverse,
                               map_path=map_path, output_column=output_column,
                               _after_chunk=_after_chunk)
    check_output_path(output, "output")
    if output.endswith(".parquet"):
        return _apply_to_parquet(model, source, output, map_path=map_path, add_mean=add_mean,
                                 memory_limit=memory_limit, chunk_rows=chunk_rows,
                                 progress=progress, n_threads=n_threads, inverse=inverse,
                                 output_column=output_column, _after_chunk=_after_chunk)
    if output_column is not None:
        raise InvalidParameterError("output_column: only a Parquet output (.parquet) has "
                                    "columns; a .npy output holds the vectors alone")
    d_out = model.W_.shape[0] if inverse else model.W_.shape[1]
    planned = _planned_chunk(source, d_out, memory_limit, chunk_rows)
    map_digest = _map_digest(model, map_path)

    header = _npy_header_bytes((source.n_rows, d_out), np.float32)
    row_bytes = 4 * d_out
    partial, journal_path = output + ".partial", output + ".partial.json"
    identity = {"map_sha256": map_digest, "input": source.fingerprint(), "rows": source.n_rows,
                "dim": d_out, "add_mean": bool(add_mean), "inverse": bool(inverse),
                "dtype": "float32"}
    rows_done, chunk = _resume_point(partial, journal_path, identity, planned,
                                     len(header) + source.n_rows * row_bytes)
    if rows_done == 0:
        with open(partial, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + source.n_rows * row_bytes)
    journal = dict(identity, chunk_rows=chunk, rows_done=rows_done)
    write_json_atomic(journal_path, journal)

    bar = _progress_bar(source.n_rows, rows_done, progress, output)
    W = model._map_matrix(inverse)
    out = np.empty((min(chunk, max(source.n_rows, 1)), d_out), dtype=np.float32)
    t_start = time.perf_counter()
    fd = os.open(partial, os.O_WRONLY)

    def write_rows(start, mapped, _):
        data = memoryview(mapped).cast("B")
        offset = len(header) + start * row_bytes
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], offset + written)
        os.fsync(fd)

    def discard():
        for path in (partial, journal_path):
            if os.path.exists(path):
                os.unlink(path)

    try:
        _map_in_chunks(model, ((start, block, None) for start, block
                               in source.blocks(chunk, first=rows_done)),
                       W, out, add_mean=add_mean, n_threads=n_threads, inverse=inverse,
                       write=write_rows, journal=journal, journal_path=journal_path, bar=bar,
                       after_chunk=_after_chunk, discard=discard)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t_start

    sidecar = _sidecar(source, map_path, map_digest, d_out, add_mean, inverse, chunk_rows=chunk)
    write_json_atomic(output + ".json", sidecar)
    os.replace(partial, output)
    os.unlink(journal_path)
    sidecar["seconds_this_run"] = seconds
    return sidecar


def _planned_chunk(source, d_out, memory_limit, chunk_rows):
    planned = plan_chunk_rows(working_budget(memory_limit, "apply"), source.n_features,
                              source.dtype.itemsize, d_out, 0, "apply")
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidParameterError(f"chunk_rows: expected a positive integer, got {chunk_rows!r}")
        if chunk_rows > planned and memory_limit is not None:
            raise MemoryLimitError(f"chunk_rows={chunk_rows} does not fit memory_limit={memory_limit}"
                              f" (at most {planned} rows per chunk)")
        planned = chunk_rows
    return planned


def _sidecar(source, map_path, map_digest, d_out, add_mean, inverse, **extra):
    """The JSON sidecar of an apply output: the map, the input, the rows and the options."""
    from .._version import __version__
    return {"format": SIDECAR_FORMAT, "map": os.path.abspath(map_path) if map_path else None,
            "map_sha256": map_digest, "input": source.describe(),
            "input_files": source.fingerprint(), "rows": source.n_rows, "dim": d_out,
            "dtype": "float32", "input_dtype": str(source.dtype), "add_mean": bool(add_mean),
            "inverse": bool(inverse), **extra, "minivec2vec_version": __version__}


def _map_digest(model, map_path):
    return file_sha256(map_path) if map_path else hashlib.sha256(
        np.ascontiguousarray(model.W_).tobytes()).hexdigest()


def _apply_to_parquet(model, source, output, *, map_path, add_mean, memory_limit, chunk_rows,
                      progress, n_threads, inverse, output_column, _after_chunk):
    """The Parquet output of :func:`apply_map`. Each chunk becomes one Parquet fragment file
    in ``<output>.partial.d/`` (written to a temporary name, synced, renamed), and the journal
    ``<output>.partial.json`` counts the rows done, so a rerun resumes after the last whole
    fragment. When all are done they are copied in order into ``<output>.partial`` as one row
    group each, which is renamed onto ``<output>``: the file exists only when complete, and a
    resumed run writes the same bytes as an uninterrupted one (same fragments, same order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from .sources import ParquetSource
    d_out = model.W_.shape[0] if inverse else model.W_.shape[1]
    if isinstance(source, ParquetSource):
        schemas = [pf.schema_arrow.remove_metadata() for pf in source._files]
        if any(not sc.equals(schemas[0]) for sc in schemas[1:]):
            raise InputFileError("input: the Parquet files have different columns; a Parquet "
                                 "output needs one schema")
        in_schema, column = source._files[0].schema_arrow, source.column
    else:
        in_schema, column = None, None
    target = output_column or column or "embedding"
    vector_type = pa.list_(pa.float32(), d_out)
    if in_schema is None:
        out_schema = pa.schema([pa.field(target, vector_type)])
    elif target in in_schema.names and target != column:
        raise InvalidParameterError(f"output_column: the input already has a column "
                                    f"{target!r}; name a new one, or omit it to replace "
                                    f"{column!r}")
    elif target == column:
        out_schema = in_schema.set(in_schema.get_field_index(column),
                                   pa.field(column, vector_type))
    else:
        out_schema = in_schema.append(pa.field(target, vector_type))
    planned = _planned_chunk(source, d_out, memory_limit, chunk_rows)
    map_digest = _map_digest(model, map_path)
    partial, journal_path = output + ".partial", output + ".partial.json"
    fragments = output + ".partial.d"
    identity = {"map_sha256": map_digest, "input": source.fingerprint(), "rows": source.n_rows,
                "dim": d_out, "add_mean": bool(add_mean), "inverse": bool(inverse),
                "dtype": "float32", "format": "parquet", "output_column": target}
    rows_done, chunk = _resume_point_fragments(fragments, journal_path, identity, planned)
    if rows_done == 0 and os.path.isdir(fragments):
        shutil.rmtree(fragments)
    os.makedirs(fragments, exist_ok=True)
    journal = dict(identity, chunk_rows=chunk, rows_done=rows_done)
    write_json_atomic(journal_path, journal)

    def fragment_path(start):
        return os.path.join(fragments, f"rows-{start:012d}.parquet")

    bar = _progress_bar(source.n_rows, rows_done, progress, output)
    W = model._map_matrix(inverse)
    out = np.empty((min(chunk, max(source.n_rows, 1)), d_out), dtype=np.float32)
    t_start = time.perf_counter()
    if isinstance(source, ParquetSource):
        blocks = source.blocks_with_columns(chunk, first=rows_done)
    else:
        blocks = ((start, block, None) for start, block in source.blocks(chunk, first=rows_done))

    def write_fragment(start, mapped, table):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(mapped.reshape(-1)), d_out)
        if table is None:
            table = pa.table([vectors], schema=out_schema)
        elif target == column:
            table = table.set_column(table.schema.get_field_index(column), target, vectors)
        else:
            table = table.append_column(target, vectors)
        table = table.replace_schema_metadata(out_schema.metadata)
        tmp = fragment_path(start) + ".tmp"
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, fragment_path(start))

    def discard():
        shutil.rmtree(fragments, ignore_errors=True)
        if os.path.exists(journal_path):
            os.unlink(journal_path)

    _map_in_chunks(model, blocks, W, out, add_mean=add_mean, n_threads=n_threads,
                   inverse=inverse, write=write_fragment, journal=journal,
                   journal_path=journal_path, bar=bar, after_chunk=_after_chunk,
                   discard=discard)
    with pq.ParquetWriter(partial, out_schema) as writer:
        for start in range(0, source.n_rows, chunk):
            writer.write_table(pq.read_table(fragment_path(start)).cast(out_schema))
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - t_start
    sidecar = _sidecar(source, map_path, map_digest, d_out, add_mean, inverse, chunk_rows=chunk,
                       output_format="parquet", output_column=target)
    write_json_atomic(output + ".json", sidecar)
    os.replace(partial, output)
    os.unlink(journal_path)
    shutil.rmtree(fragments, ignore_errors=True)
    sidecar["seconds_this_run"] = seconds
    return sidecar


def _apply_to_store(model, source, output, *, add_mean, memory_limit, chunk_rows, progress,
                    n_threads, inverse, map_path, output_column, _after_chunk):
    """A new vector store of the input store's kind, holding the mapped vectors under the
    input's ids with its other fields (see :mod:`minivec2vec.io.stores`), streamed chunk by chunk
    under ``memory_limit`` and made visible only when complete."""
    from . import stores
    scheme, path = stores.parse(output)
    store = stores.module(scheme)
    if type(source).__module__ != store.__name__:
        raise InvalidParameterError(f"output {output!r}: a {scheme} store is written from a "
                                    f"{scheme} input (it copies its type and ids); the input "
                                    f"is {source.describe()}")
    d_out = model.W_.shape[0] if inverse else model.W_.shape[1]
    planned = _planned_chunk(source, d_out, memory_limit, chunk_rows)
    map_digest = _map_digest(model, map_path)
    identity = {"map_sha256": map_digest, "input": source.fingerprint(), "rows": source.n_rows,
                "dim": d_out, "add_mean": bool(add_mean), "inverse": bool(inverse),
                "dtype": "float32", "format": scheme, "output_column": output_column}
    writer = store.Writer(path, source, d_out, identity=identity, output_column=output_column,
                          chunk_rows=planned)
    rows_done, chunk = writer.rows_done, writer.chunk_rows
    bar = _progress_bar(source.n_rows, rows_done, progress, output)
    W = model._map_matrix(inverse)
    out = np.empty((min(chunk, max(source.n_rows, 1)), d_out), dtype=np.float32)
    t_start = time.perf_counter()
    # the writer journals its own chunks; a store also gives up on an input changed under it
    _map_in_chunks(model, source.blocks_with_records(chunk, first=rows_done), W, out,
                   add_mean=add_mean, n_threads=n_threads, inverse=inverse,
                   write=writer.write, bar=bar, after_chunk=_after_chunk,
                   discard=writer.abort, discard_on=(NonFiniteError, ZeroRowError, InputFileError))
    writer.commit()
    sidecar = _sidecar(source, map_path, map_digest, d_out, add_mean, inverse,
                       chunk_rows=chunk, output_format=scheme, output_column=output_column)
    write_json_atomic(writer.sidecar_path, sidecar)
    sidecar["seconds_this_run"] = time.perf_counter() - t_start
    sidecar["sidecar_path"] = writer.sidecar_path
    return sidecar


def _map_in_chunks(model, blocks, W, out, *, add_mean, n_threads, inverse, write, bar,
                   after_chunk, discard, journal=None, journal_path=None,
                   discard_on=(NonFiniteError, ZeroRowError)):
    """The chunk loop of every apply output. For each ``(start, rows, extra)`` of ``blocks``:
    map the rows into ``out``, hand them to ``write(start, mapped, extra)``, then count the chunk
    done: ``journal["rows_done"]`` rewritten atomically to ``journal_path`` (when a journal is
    given), the progress bar advanced, the test hook ``after_chunk(n_chunks)`` called. A chunk
    is counted only once written, so a rerun resumes after the last whole chunk.

    An error of ``discard_on`` (bad input rows: NaN, a zero row; a rerun would fail the same
    way) calls ``discard()`` to remove the partial output, then propagates. Any other error (a
    file truncated or replaced while read, a full disk) keeps the partial output, so that the
    rerun resumes once the input is whole again. The bar is closed either way."""
    try:
        for n_chunks, (start, block, extra) in enumerate(blocks, 1):
            stop = start + block.shape[0]
            mapped = model._transform_block(block, start, W, add_mean, out[:stop - start],
                                            n_threads, inverse)
            write(start, mapped, extra)
            if journal is not None:
                journal["rows_done"] = stop
                write_json_atomic(journal_path, journal)
            if bar is not None:
                bar.update(stop - start)
            if after_chunk is not None:
                after_chunk(n_chunks)
    except discard_on:
        discard()
        raise
    finally:
        if bar is not None:
            bar.close()


def _journal_resume_point(journal_path, identity, planned_chunk):
    """(rows done, chunk size) from the journal at ``journal_path`` when it records the same
    map, input and options (``identity``) and a chunk size the plan still allows, with a whole
    number of chunks done (chunk boundaries must match for a byte-identical result); else None
    (another input, map or option, a smaller memory limit, or an unreadable journal)."""
    try:
        with open(journal_path) as fh:
            journal = json.load(fh)
    except (OSError, ValueError):
        return None
    chunk, done = journal.get("chunk_rows"), journal.get("rows_done")
    if (not all(journal.get(key) == value for key, value in identity.items())
            or not isinstance(chunk, int) or not isinstance(done, int) or chunk < 1
            or chunk > planned_chunk or not (0 <= done <= identity["rows"])
            or (done % chunk and done != identity["rows"])):
        return None
    return done, chunk


def _resume_point_fragments(fragments, journal_path, identity, planned_chunk):
    """(rows done, chunk size) of a Parquet output's matching journal whose fragments all
    exist, else (0, planned_chunk)."""
    if identity["input"] is None or not os.path.exists(journal_path):
        return 0, planned_chunk
    found = _journal_resume_point(journal_path, identity, planned_chunk)
    if found is None or not all(
            os.path.exists(os.path.join(fragments, f"rows-{s:012d}.parquet"))
            for s in range(0, found[0], found[1])):
        return 0, planned_chunk
    return found


def _resume_point(partial, journal_path, identity, planned_chunk, expected_size):
    """(rows already done, chunk size) from a matching journal, else (0, planned_chunk)."""
    if identity["input"] is None:
        return 0, planned_chunk     # an in-memory array cannot be recognised again: start over
    if not (os.path.exists(partial) and os.path.exists(journal_path)):
        return 0, planned_chunk
    found = _journal_resume_point(journal_path, identity, planned_chunk)
    if found is None or os.path.getsize(partial) != expected_size:
        return 0, planned_chunk
    return found


def _progress_bar(total, initial, enabled, output):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="rows", unit_scale=True, file=sys.stderr,
                desc=os.path.basename(output), dynamic_ncols=True)
