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
import sys
import time

import numpy as np

from ._errors import (InvalidParameterError, MapFileError, MemoryLimitError, NonFiniteError,
                      ZeroRowError)
from ._threads import resolve_n_threads
from ._validation import check_output_path
from ._memory import chunk_rows as plan_chunk_rows, working_budget
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


def _write_json_atomic(path, payload):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def apply_map(model, X, output, *, map_path=None, add_mean=False, memory_limit=None,
              chunk_rows=None, progress=True, column=None, n_threads=None, inverse=False,
              _after_chunk=None):
    """Map every row of X (any input :func:`~minivec2vec.sources.open_source` accepts) with
    ``model`` into the float32 ``.npy`` file ``output``, streaming chunk by chunk.

    Parameters
    ----------
    model : fitted MiniVec2Vec, or the path of a map file (then ``map_path`` is that path)
    X : input rows of space A
    output : path of the ``.npy`` file to write
    map_path : the map file's path, recorded with its SHA-256 in the sidecar and the journal
    add_mean : as in :meth:`MiniVec2Vec.transform`
    inverse : map B rows into A (:meth:`MiniVec2Vec.inverse_transform`) instead of A into B
    memory_limit : bytes or e.g. "2GB"; the chunk size is planned from it
    chunk_rows : rows per chunk (default: the planned size, at most 65,536); a smaller value
        means finer resume points
    progress : show a tqdm progress bar on stderr
    column : Parquet embedding column (default: the only fixed-size list column)
    n_threads : threads of the per-chunk product (default: the model's ``n_threads``); the
        output bytes are the same whatever the thread count and chunk size

    Returns the sidecar dictionary (also written to ``output + ".json"``).
    """
    from .model import MiniVec2Vec
    if isinstance(model, (str, os.PathLike)):
        map_path = os.fspath(model)
        model = MiniVec2Vec.load(map_path)
    model._check_fitted()
    n_threads = resolve_n_threads(model.n_threads if n_threads is None else n_threads)
    source = open_source(X, "input", column=column)
    model._check_input_features(source, inverse)
    output = os.fspath(output)
    check_output_path(output, "output")
    if inverse and add_mean and not np.isfinite(getattr(model, "scale_a_", np.nan)):
        raise MapFileError("inverse with add_mean needs A's scale, which map files written by "
                           "minivec2vec before 0.1.0 of 2026-12-03 lack; refit, or drop add_mean")
    d_out = model.n_features_a_ if inverse else model.n_features_b_
    planned = plan_chunk_rows(working_budget(memory_limit, "apply"), source.n_features,
                              source.dtype.itemsize, d_out, 0, "apply")
    if chunk_rows is not None:
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidParameterError(f"chunk_rows: expected a positive integer, got {chunk_rows!r}")
        if chunk_rows > planned and memory_limit is not None:
            raise MemoryLimitError(f"chunk_rows={chunk_rows} does not fit memory_limit={memory_limit}"
                              f" (at most {planned} rows per chunk)")
        planned = chunk_rows
    map_digest = file_sha256(map_path) if map_path else hashlib.sha256(
        np.ascontiguousarray(model.W_).tobytes()).hexdigest()

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
    _write_json_atomic(journal_path, journal)

    bar = _progress_bar(source.n_rows, rows_done, progress, output)
    W = model._map_matrix(inverse)
    out = np.empty((min(chunk, max(source.n_rows, 1)), d_out), dtype=np.float32)
    t_start = time.perf_counter()
    fd = os.open(partial, os.O_WRONLY)
    try:
        for n_chunks, (start, block) in enumerate(source.blocks(chunk, first=rows_done), 1):
            stop = start + block.shape[0]
            mapped = model._transform_block(block, start, W, add_mean, out[:stop - start],
                                            n_threads, inverse)
            data = memoryview(mapped).cast("B")
            offset = len(header) + start * row_bytes
            written = 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], offset + written)
            os.fsync(fd)
            journal["rows_done"] = stop
            _write_json_atomic(journal_path, journal)
            if bar is not None:
                bar.update(stop - start)
            if _after_chunk is not None:
                _after_chunk(n_chunks)
    except (NonFiniteError, ZeroRowError):
        # bad input rows (NaN, a zero row): a rerun would fail the same way, nothing to resume.
        # Anything else (a file truncated or replaced while reading, a full disk) keeps the
        # partial output: once the input is whole again the rerun resumes.
        for path in (partial, journal_path):
            if os.path.exists(path):
                os.unlink(path)
        raise
    finally:
        os.close(fd)
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t_start

    sidecar = {"format": SIDECAR_FORMAT, "map": os.path.abspath(map_path) if map_path else None,
               "map_sha256": map_digest, "input": source.describe(),
               "input_files": source.fingerprint(), "rows": source.n_rows, "dim": d_out,
               "dtype": "float32", "input_dtype": str(source.dtype),
               "add_mean": bool(add_mean), "inverse": bool(inverse), "chunk_rows": chunk}
    from . import __version__
    sidecar["minivec2vec_version"] = __version__
    _write_json_atomic(output + ".json", sidecar)
    os.replace(partial, output)
    os.unlink(journal_path)
    sidecar["seconds_this_run"] = seconds
    return sidecar


def _resume_point(partial, journal_path, identity, planned_chunk, expected_size):
    """(rows already done, chunk size) from a matching journal, else (0, planned_chunk)."""
    if identity["input"] is None:
        return 0, planned_chunk     # an in-memory array cannot be recognised again: start over
    if not (os.path.exists(partial) and os.path.exists(journal_path)):
        return 0, planned_chunk
    try:
        with open(journal_path) as fh:
            journal = json.load(fh)
    except (OSError, ValueError):
        return 0, planned_chunk
    same = all(journal.get(key) == value for key, value in identity.items())
    chunk = journal.get("chunk_rows")
    done = journal.get("rows_done")
    if (not same or not isinstance(chunk, int) or not isinstance(done, int)
            or os.path.getsize(partial) != expected_size or chunk > planned_chunk
            or not (0 <= done <= identity["rows"]) or (done % chunk and done != identity["rows"])):
        # another input, map or option, or a chunk size the memory limit no longer allows:
        # start over (chunk boundaries must match for a byte-identical result)
        return 0, planned_chunk
    return done, chunk


def _progress_bar(total, initial, enabled, output):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="rows", unit_scale=True, file=sys.stderr,
                desc=os.path.basename(output), dynamic_ncols=True)
