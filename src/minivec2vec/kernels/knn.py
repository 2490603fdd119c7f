"""Exact blocked k-nearest-neighbour search with the top-k selection fused into the kernel.

Three engines give the same exact result (the same neighbours, ties to the lower index):

* ``"int8"`` (CPUs with AVX-512 VNNI): the database is quantised to int8 codes once, row by row;
  a C++ micro-kernel computes int8 dot products (about twice the float32 FMA rate) and screens
  them against each query's running k-th best exact score minus a rigorous bound on the
  quantisation error; only the few survivors get their exact float32 score
  (csrc/knn_int8.hpp). The database is processed in chunks whose size follows ``memory_limit``.
* ``"int8-avx2"`` (CPUs with AVX2 + FMA, e.g. AMD Zen 2/3, Intel before Ice Lake): the same
  screen, the same packed database and bound, with a ``vpmaddubsw`` / ``vpmaddwd`` kernel and
  6-bit query codes, whose products of two feature groups add in int16 without saturating
  (csrc/knn_int8_avx2.hpp).
* ``"blas"`` (any CPU): each worker thread computes similarity tiles with a single-threaded BLAS
  GEMM and folds every tile into its running top-k with the C++ kernel of csrc/topk.hpp.

``ENGINE``, the default, is the first of these the CPU can run (:func:`available_engines`).
The environment variable ``MINIVEC2VEC_KNN_ENGINE`` (one of the names above) forces it for the
whole process, read once at import, so that every engine can be tested and benchmarked on any
CPU that runs it; the ``engine=`` parameter forces it for one call.

Either way each worker thread owns a block of queries, the GIL is released in the kernels, no
n_queries x n_database matrix ever exists, and query blocks have a size that depends on the
number of queries only, so results are bit-identical whatever the thread count.

Concurrent calls from several Python threads give results bit-identical to a lone call's,
with either engine: the BLAS engine's GEMMs run with BLAS held at one thread while any call
runs (``_runtime.threads.single_threaded_blas``). That hold once failed silently when a call came
from a thread other than the first to set BLAS's count (threadpoolctl lets only that thread
change a pthreads OpenBLAS's count), and the overlapping calls' scores then came out ~1e-5
apart on AVX2 CPUs. On the BLAS engine, two equal database rows may still be scored a
rounding apart when a memory limit changes the tile shapes, and either may then win their tie.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import _core
from ..exceptions import InvalidParameterError, MemoryLimitError, ShapeError, TooFewRowsError
from .._runtime.blocks import BLOCK_ROWS
from .._runtime.threads import max_worker_threads, parallel_region, resolve_n_threads
from .._runtime.validation import (as_float32_block, check_embeddings, check_positive_int,
                                   parse_memory)

_METRICS = ("ip", "cosine")
_ENGINES = ("int8", "int8-avx2", "blas")   # best first
_INT8_ENGINES = ("int8", "int8-avx2")       # the engines that screen with int8 codes
_ENGINE_NEEDS = {"int8": ("AVX-512 VNNI", _core.has_vnni),
                 "int8-avx2": ("AVX2 + FMA", _core.has_avx2),
                 "blas": ("nothing", lambda: True)}
ENGINE_VARIABLE = "MINIVEC2VEC_KNN_ENGINE"


def available_engines():
    """The kNN engines this CPU can run, best first."""
    return tuple(name for name in _ENGINES if _ENGINE_NEEDS[name][1]())


def _check_engine(engine, who="engine"):
    """``engine`` if it is a known engine this CPU can run, else a clear error."""
    if engine not in _ENGINES:
        raise InvalidParameterError(f"{who}: expected one of {_ENGINES}, got {engine!r}")
    need, runs = _ENGINE_NEEDS[engine]
    if not runs():
        raise InvalidParameterError(f"{who}={engine!r} needs a CPU with {need}; this one can run "
                                    f"{available_engines()}")
    return engine


def _default_engine():
    forced = os.environ.get(ENGINE_VARIABLE, "").strip()
    if forced:
        return _check_engine(forced, ENGINE_VARIABLE)
    return available_engines()[0]


ENGINE = _default_engine()   # the default engine of this process (see the module docstring)
QUERY_BLOCK = 256        # rows of queries per task of the BLAS engine (upper bound)
_INT8_QUERY_BYTES = 393216   # int8 engine: query codes per task (see _int8_query_block)
_BLOCK_UNDER_LIMIT = 256     # int8 engine: query rows per task at most, under a memory_limit
_INT8_MAX_FEATURES = 65536   # int8 engines: int32 sums stay exact up to here (else BLAS)
DATABASE_TILE = 2048     # database rows per similarity tile (upper bound)
_MIN_TILE = 64
_pools: dict = {}
_pools_lock = threading.Lock()


def _forget_pools_after_fork():
    """A forked child inherits the pool objects but not their threads: tasks submitted there
    would wait forever. The child starts with no pools (and a fresh lock)."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_after_fork)


def _worker_pool(n_threads):
    """One long-lived pool per thread count: no thread start-up cost per call."""
    with _pools_lock:
        pool = _pools.get(n_threads)
        if pool is None:
            pool = _pools[n_threads] = ThreadPoolExecutor(max_workers=n_threads,
                                                          thread_name_prefix="minivec2vec")
        return pool


def knn(queries, database, k, metric="ip", n_threads=None, memory_limit=None, engine=None):
    """Exact k nearest neighbours of every query row among the database rows.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, d), float16/32/64
    database : ndarray of shape (n_database, d), float16/32/64
    k : int, 1 <= k <= n_database
    metric : {"ip", "cosine"}
        Inner product, or cosine similarity (rows normalised; zero rows score 0).
    n_threads : int, optional
        Worker threads (default: all cores Numba may use). Results do not depend on it.
    memory_limit : int or str, optional
        Upper bound on the working memory of the call (bytes or e.g. "512MB"); tile sizes follow.
    engine : {"int8", "int8-avx2", "blas"}, optional
        Default: ``ENGINE``, the best this CPU runs (``"int8"`` with AVX-512 VNNI, else
        ``"int8-avx2"`` with AVX2, else ``"blas"``), or ``$MINIVEC2VEC_KNN_ENGINE``. All are
        exact (see the module docstring); scores may differ in the last float32 bits between
        them. An engine this CPU cannot run raises InvalidParameterError.

    Returns
    -------
    scores : ndarray of shape (n_queries, k), float32, best first
    indices : ndarray of shape (n_queries, k), int64; ties go to the lower index
    """
    if metric not in _METRICS:
        raise InvalidParameterError(f"metric: expected one of {_METRICS}, got {metric!r}")
    if engine is not None:
        _check_engine(engine)
    queries = check_embeddings(queries, "queries")
    database = check_embeddings(database, "database", n_features=queries.shape[1])
    k = check_positive_int(k, "k")
    if k > database.shape[0]:
        raise TooFewRowsError(f"k={k} is larger than the database ({database.shape[0]} rows)")
    return _knn(queries, database, k, metric, n_threads, memory_limit, engine)


def _knn(queries, database, k, metric="ip", n_threads=None, memory_limit=None, engine=None,
         bias=None):
    """:func:`knn` without input validation, for the pipeline's own already-checked arrays
    (the refine loops would otherwise rescan the whole database for NaN at every step).
    ``database`` may also be a :class:`PreparedDatabase` (packed once, searched many times).

    ``bias`` (float32, one value per database row) makes the score of row j
    ``similarity(q, x_j) + bias[j]``: with ``-|c_j|^2 / 2`` the best row is the nearest center
    (k-means), with ``-r(y_j) / 2`` the CSLS choice. A prepared database carries its own."""
    n_threads = resolve_n_threads(n_threads)
    engine = ENGINE if engine is None else engine
    if isinstance(database, PreparedDatabase):
        if database.metric != metric:
            raise ValueError(f"the database was prepared for metric {database.metric!r}, "
                             f"not {metric!r}")
        if bias is not None:
            raise ValueError("bias: a prepared database carries its own bias")
        if database.packed is not None:
            return _search_int8(queries, database, k, metric, n_threads,
                                parse_memory(memory_limit), engine=database.engine)
        database, bias = database.rows, database.bias
    bias = _check_bias(bias, database.shape[0])
    if engine in _INT8_ENGINES and queries.shape[1] <= _INT8_MAX_FEATURES:
        return _search_int8(queries, database, k, metric, n_threads, parse_memory(memory_limit),
                            bias, engine=engine)
    # Block sizes are planned for the most worker buffers this process can run, not for
    # n_threads: tile shapes (hence BLAS rounding) then never depend on the thread count.
    plan = _plan(queries.shape[0], database.shape[0], queries.shape[1], k, max_worker_threads(),
                 parse_memory(memory_limit), database.dtype != np.float32 or metric == "cosine"
                 or not database.flags.c_contiguous)
    db = database
    if plan["prepare_database"]:
        db = _prepared(database, metric)
    return _search(queries, db, k, metric, n_threads, plan,
                   normalise_tiles=(metric == "cosine" and not plan["prepare_database"]),
                   bias=bias)


def _check_bias(bias, n_database):
    if bias is None:
        return None
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if bias.shape != (n_database,):
        raise ValueError(f"bias: expected shape ({n_database},), got {bias.shape}")
    return bias


class PreparedDatabase:
    """A database made ready once for many searches: float32 rows (normalised for cosine) and,
    with the int8 engine, their packed int8 codes. Used by the refine loops, which search the
    same rows a hundred times."""

    def __init__(self, database, metric="ip", engine=None, bias=None):
        if metric not in _METRICS:
            raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
        engine = ENGINE if engine is None else _check_engine(engine)
        self.metric = metric
        self.rows = database if _usable_rows(database, metric) else _prepared(database, metric)
        self.bias = _check_bias(bias, self.rows.shape[0])
        if engine in _INT8_ENGINES and self.rows.shape[1] > _INT8_MAX_FEATURES:
            engine = "blas"
        self.engine = engine
        self.packed = (_core.Int8Database(self.rows, self.bias) if engine in _INT8_ENGINES
                       else None)
        self.shape = self.rows.shape


def _usable_rows(database, metric):
    """True when the kernels can read ``database`` as it is (float32, rows contiguous)."""
    return (metric == "ip" and database.dtype == np.float32
            and (database.shape[1] <= 1 or database.strides[1] == 4)
            and (database.shape[0] <= 1 or database.strides[0] % 4 == 0))


def plan_knn(n_queries, n_database, d, k, memory_limit, copy_database, engine=None):
    """The block plan of one kNN call (engine's own), raising MemoryLimitError before any work
    when ``memory_limit`` cannot hold one block. Lets callers check a whole pipeline up front."""
    engine = ENGINE if engine is None else engine
    memory_limit = parse_memory(memory_limit)
    if engine in _INT8_ENGINES and d <= _INT8_MAX_FEATURES:
        return _plan_int8(n_queries, n_database, d, k, max_worker_threads(), memory_limit,
                          copy_database)
    return _plan(n_queries, n_database, d, k, max_worker_threads(), memory_limit, copy_database)


def _int8_query_block(n_queries, d, n_threads):
    """Query rows per int8 task: as many as keep their codes (~384 KB) in L2 while the database
    panels stream past, and at least one block per thread. Each block's exact re-scores read
    the float32 database rows again, so fewer, larger blocks stream it fewer times: refine-1's
    1,000 x 30,000 x 256 search (k = 50) 53 -> 43 ms, 10,000 x 60,000 x 384 0.98 -> 0.85 s,
    against the former fixed 1/8 of the queries (at most 256). The int8 result is exact query
    by query, so these blocks may follow the thread count without changing it."""
    cap = max(16, _INT8_QUERY_BYTES // max(d, 1))
    n_blocks = max(n_threads, -(-n_queries // cap))
    n_blocks = -(-n_blocks // n_threads) * n_threads
    return max(1, -(-n_queries // n_blocks))


def _plan_int8(n_queries, n_database, d, k, n_threads, memory_limit, copy_rows):
    """Database chunk rows for the int8 engine; raise before any work if one chunk cannot fit."""
    query_block = _int8_query_block(n_queries, d, 1)       # the largest any call uses
    fixed = n_queries * k * 12                               # the heaps
    if memory_limit is not None:   # query blocks take at most half of what the heaps leave
        room = (memory_limit - fixed) // (2 * n_threads * (5 * d + 16))
        query_block = max(1, min(query_block, room, _BLOCK_UNDER_LIMIT))
    per_thread = query_block * (5 * d + 16) + 4096           # float32 query block, codes, scales
    per_row = d + 16 + (4 * d if copy_rows else 0)           # codes, scale, shift (+ float32 copy)
    chunk = n_database
    if memory_limit is not None:
        room = memory_limit - fixed - n_threads * per_thread
        chunk = min(n_database, room // per_row if room > 0 else 0)
        if chunk < min(n_database, _MIN_TILE):
            need = fixed + n_threads * per_thread + per_row * min(n_database, _MIN_TILE)
            raise MemoryLimitError(f"memory_limit={memory_limit} bytes is too small for knn: "
                                   f"the output needs {fixed} bytes and one block {need} bytes")
        if chunk < n_database:
            chunk = max(_MIN_TILE, chunk // _MIN_TILE * _MIN_TILE)
    return {"query_block": query_block, "chunk": int(chunk)}


def _search_int8(queries, database, k, metric, n_threads, memory_limit, bias=None,
                 engine="int8"):
    search_kernel = _core.search_int8_avx2 if engine == "int8-avx2" else _core.search_int8
    n_queries, d = queries.shape
    prepared = database if isinstance(database, PreparedDatabase) else None
    copy_rows = prepared is None and not _usable_rows(database, metric)
    plan = _plan_int8(n_queries, database.shape[0], d, k, max_worker_threads(), memory_limit,
                      copy_rows)
    qb = min(_int8_query_block(n_queries, d, n_threads), plan["query_block"])
    chunk = plan["chunk"]
    queries_usable = _usable_rows(queries, metric)
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    indices = np.full((n_queries, k), -1, dtype=np.int64)
    starts = list(range(0, n_queries, qb))

    with parallel_region(n_threads):
        pool = _worker_pool(n_threads) if n_threads > 1 and len(starts) > 1 else None

        def each_block(work):
            if pool is None:
                for start in starts:
                    work(start)
            else:
                for future in [pool.submit(work, start) for start in starts]:
                    future.result()

        n_database = database.shape[0]
        for c0 in range(0, n_database, chunk):
            if prepared is not None:
                rows, packed = prepared.rows, prepared.packed
            else:
                rows = database[c0:c0 + chunk]
                if copy_rows:
                    rows = _prepared(rows, metric)
                packed = _core.Int8Database(rows, None if bias is None else bias[c0:c0 + chunk])

            def search(start, rows=rows, packed=packed, offset=c0):
                stop = start + qb
                q = queries[start:stop]
                if not queries_usable:
                    q = _prepared(q, metric)
                search_kernel(q, packed, rows, offset, scores[start:stop], indices[start:stop])
            each_block(search)
            del search, rows, packed   # one chunk alive at a time

        def finish(start):
            _core.sort_topk(scores[start:start + qb], indices[start:start + qb])
        each_block(finish)
    return scores, indices


def _plan(n_queries, n_database, d, k, n_threads, memory_limit, wants_copy):
    """Choose block sizes from the memory budget; raise before any work if it cannot fit."""
    query_block = int(min(QUERY_BLOCK, max(16, -(-n_queries // 8))))
    tile = DATABASE_TILE
    out_bytes = n_queries * k * 12
    copy_bytes = n_database * d * 4 if wants_copy else 0
    prepare = wants_copy

    def per_thread(qb, tb, on_the_fly):
        return 4 * (qb * tb + qb * d + (tb * d if on_the_fly else 0))

    if memory_limit is not None:
        def fits(qb, tb, prep):
            return out_bytes + (copy_bytes if prep else 0) + n_threads * per_thread(
                qb, tb, wants_copy and not prep) <= memory_limit
        # shrink the tile first, then drop the database copy, then shrink the query block
        while not fits(query_block, tile, prepare) and tile > _MIN_TILE:
            tile //= 2
        if not fits(query_block, tile, prepare) and prepare:
            prepare = False
            tile = DATABASE_TILE
            while not fits(query_block, tile, prepare) and tile > _MIN_TILE:
                tile //= 2
        while not fits(query_block, tile, prepare) and query_block > 1:
            query_block = max(1, query_block // 2)
        if not fits(query_block, tile, prepare):
            need = out_bytes + n_threads * per_thread(1, _MIN_TILE, wants_copy)
            raise MemoryLimitError(f"memory_limit={memory_limit} bytes is too small for knn: the "
                              f"output alone needs {out_bytes} bytes and one block {need} bytes")
    return {"query_block": query_block, "tile": tile, "prepare_database": prepare}


def _prepared(database, metric):
    """The rows as one float32 C-contiguous copy (normalised for cosine)."""
    db = np.empty(database.shape, dtype=np.float32)
    step = BLOCK_ROWS
    for start in range(0, database.shape[0], step):
        block = database[start:start + step]
        db[start:start + step] = block
        if metric == "cosine":
            normalise_rows(db[start:start + step])
    return db


def normalise_rows(block):
    """In-place L2 normalisation of a float32 block; zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))
    norms[norms == 0] = 1.0
    block /= norms[:, None]
    return block


def _search(queries, db, k, metric, n_threads, plan, normalise_tiles, bias=None):
    n_queries = queries.shape[0]
    n_database = db.shape[0]
    qb, tile = plan["query_block"], plan["tile"]
    scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
    indices = np.full((n_queries, k), -1, dtype=np.int64)
    starts = list(range(0, n_queries, qb))

    def run_block(start):
        stop = min(start + qb, n_queries)
        q = np.array(queries[start:stop], dtype=np.float32, order="C")
        if metric == "cosine":
            normalise_rows(q)
        buffer = np.empty(q.shape[0] * min(tile, n_database), dtype=np.float32)
        s_block, i_block = scores[start:stop], indices[start:stop]
        for t0 in range(0, n_database, tile):
            t1 = min(t0 + tile, n_database)
            d_tile = db[t0:t1]
            if normalise_tiles:
                # always a private copy: the caller's rows are never normalised in place
                d_tile = normalise_rows(np.array(d_tile, dtype=np.float32, order="C"))
            elif d_tile.dtype != np.float32 or not d_tile.flags.c_contiguous:
                d_tile = as_float32_block(d_tile)
            sim = buffer[:q.shape[0] * (t1 - t0)].reshape(q.shape[0], t1 - t0)
            np.matmul(q, d_tile.T, out=sim)
            if bias is not None:
                sim += bias[t0:t1]
            _core.fold_tile(sim, t0, s_block, i_block)
        _core.sort_topk(s_block, i_block)

    with parallel_region(n_threads):
        if n_threads == 1 or len(starts) == 1:
            for s in starts:
                run_block(s)
        else:
            pool = _worker_pool(n_threads)
            for future in [pool.submit(run_block, s) for s in starts]:
                future.result()
    return scores, indices


def csls_nearest(queries, database, k=10, n_threads=None, memory_limit=None):
    """CSLS nearest neighbours in both directions between two sets of unit-norm rows.

    CSLS(q, y) = 2 cos(q, y) - r_D(y) - r_Q(q), where r_D(y) is the mean similarity of y to its
    k nearest queries and r_Q(q) that of q to its k nearest database rows: it discounts hubs.
    The argmax over y does not depend on r_Q(q), and ranks y as cos(q, y) - r_D(y) / 2 does:
    an exact :func:`knn` with a per-row bias, one call per direction.

    Returns (forward, backward): forward[i] is the CSLS-best database row of query i,
    backward[j] the CSLS-best query of database row j.
    """
    k_db = min(k, queries.shape[0])
    k_q = min(k, database.shape[0])
    r_q = _knn(queries, database, k_q, n_threads=n_threads, memory_limit=memory_limit)[0].mean(axis=1)
    r_db = _knn(database, queries, k_db, n_threads=n_threads, memory_limit=memory_limit)[0].mean(axis=1)
    forward = _knn(queries, database, 1, n_threads=n_threads, memory_limit=memory_limit,
                   bias=-0.5 * r_db)[1][:, 0]
    backward = _knn(database, queries, 1, n_threads=n_threads, memory_limit=memory_limit,
                    bias=-0.5 * r_q)[1][:, 0]
    return forward, backward


def merge_topk(scores_a, indices_a, scores_b, indices_b):
    """Merge two per-query top-k results (e.g. from two database blocks) into one.

    Both inputs must be best-first (as returned by :func:`knn`, with indices already global).
    The merge is associative and commutative, so any engine can reduce partial results.
    """
    arrays = [np.ascontiguousarray(scores_a, dtype=np.float32),
              np.ascontiguousarray(indices_a, dtype=np.int64),
              np.ascontiguousarray(scores_b, dtype=np.float32),
              np.ascontiguousarray(indices_b, dtype=np.int64)]
    names = ("scores_a", "indices_a", "scores_b", "indices_b")
    for name, array in zip(names, arrays):
        if array.ndim != 2:
            raise ShapeError(f"merge_topk: {name} must be 2-D (n_queries, k), got shape "
                             f"{array.shape}")
    shapes = {name: array.shape for name, array in zip(names, arrays)}
    if len(set(shapes.values())) != 1:
        raise ShapeError(f"merge_topk: all four arrays must have the same shape (n_queries, k), "
                         f"got {shapes}")
    return _core.merge_topk(*arrays)
