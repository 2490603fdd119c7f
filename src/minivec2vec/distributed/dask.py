"""Dask inputs: the partial states of :mod:`minivec2vec.kernels.partials` driven by blockwise and
reduction operations over the blocks of dask arrays (optional extra ``minivec2vec[dask]``).

* ``MiniVec2Vec.fit`` on dask arrays: each side's column means come from one-sided Procrustes
  partial sums reduced over the blocks (one pass over all rows, on the workers); then the same
  random draws as the in-memory path pick ``fit_sample`` rows per side, only those rows travel
  to the client, and the stages run there (:meth:`MiniVec2Vec.fit_from_sample`). With the same seed
  the map equals the one fitted in memory.
* ``MiniVec2Vec.transform`` of a dask array: a lazy dask array, one task per block of rows.
* :func:`dask_knn`: exact kNN of dask queries against a dask database: one top-k partial per
  (query block, database block), reduced with ``merge_topk`` along the database axis.
* :func:`dask_procrustes`: supervised Procrustes of paired dask arrays from partial sums.

This module imports dask only inside its functions; the package works without it.
"""
from __future__ import annotations

import functools

import numpy as np

from ..exceptions import (DtypeError, InvalidParameterError, MissingDependencyError, NonFiniteError,
                          ShapeError, TooFewRowsError, ZeroRowError)
from .._runtime.validation import check_embeddings, check_layout, check_positive_int
from ..kernels.knn import _METRICS, merge_topk
from . import is_dask_array
from ..kernels.rows import column_mean, map_rows, sample_indices
from ..kernels.partials import (finalize_procrustes, merge_procrustes_partials, partial_means,
                                procrustes_partial, topk_partial)

# One (score, global index) slot of a top-k list: the two halves of partial (b) travel together.
TOPK_DTYPE = np.dtype([("score", np.float32), ("index", np.int64)])


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("minivec2vec: dask inputs need Dask; install the optional "
                                     "extra with  pip install 'minivec2vec[dask]'") from exc
    return dask, da


# ------------------------------------------------------------------------------ validation
def check_dask_embeddings(X, name, *, min_rows=1, n_features=None):
    """The graph-level checks of :func:`check_embeddings` for a dask array (dtype, shape,
    rows, features); returns X with its feature axis in one chunk. NaN/Inf are found when the
    data is read (fit: from the sums; transform: per block, naming the row)."""
    _, da = _import_dask()
    if not isinstance(X, da.Array):
        raise DtypeError(f"{name}: expected a dask array, got {type(X).__name__}")
    if X.ndim == 2 and any(np.isnan(c) for c in X.chunks[0]):
        raise ShapeError(f"{name}: the dask array has unknown chunk sizes; call "
                         f"{name}.compute_chunk_sizes() first")
    check_layout(X.dtype, X.shape, name, min_rows=min_rows, n_features=n_features)
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def _first_non_finite_row(X):
    _, da = _import_dask()
    bad = ~da.isfinite(X).all(axis=1)
    return int(da.argmax(bad).compute())


# ------------------------------------------------------------------------------ partial (a)
def _partial_of_block(x, y=None):
    out = np.empty(1, dtype=object)
    out[0] = procrustes_partial(x, y)
    return out


def _merge_partial_block(block, axis=None, keepdims=True):
    """Reduction step: the partials held in an object block merged into one."""
    out = np.empty(1, dtype=object)
    out[0] = functools.reduce(merge_procrustes_partials, block.ravel())
    return out


def summed_partial(X, Y=None):
    """Lazy: the :class:`~minivec2vec.kernels.partials.ProcrustesPartial` of all rows of X (and the
    paired rows of Y), as a 1-element object dask array. One partial per block of rows
    (blockwise), merged by a tree reduction (``da.reduction``)."""
    _, da = _import_dask()
    meta = np.empty((0,), dtype=object)
    arrays = (X, "ia") if Y is None else (X, "ia", Y, "ib")
    parts = da.blockwise(_partial_of_block, "i", *arrays, dtype=object, concatenate=True,
                         adjust_chunks={"i": 1}, meta=meta)
    return da.reduction(parts, chunk=_merge_partial_block, combine=_merge_partial_block,
                        aggregate=_merge_partial_block, axis=0, keepdims=True, dtype=object,
                        concatenate=True, meta=meta)


def dask_procrustes(X, Y, centre=True):
    """Supervised (semi-)orthogonal Procrustes W (d_a x d_b, numpy) of PAIRED dask arrays:
    row i of X maps to row i of Y. Only the d_a x d_b partial sums reach the client."""
    _, da = _import_dask()
    X = check_dask_embeddings(da.asarray(X), "X")
    Y = check_dask_embeddings(da.asarray(Y), "Y")
    if X.shape[0] != Y.shape[0]:
        raise ShapeError(f"Y: has {Y.shape[0]} rows, X has {X.shape[0]}: the rows must be paired")
    partial = summed_partial(X, Y).compute()[0]
    if not (np.all(np.isfinite(partial.cross_covariance)) and np.all(np.isfinite(partial.sum_x))
            and np.all(np.isfinite(partial.sum_y))):
        for Z, name in ((X, "X"), (Y, "Y")):
            row = _first_non_finite_row(Z)
            if not np.isfinite(Z[row].compute()).all():
                raise NonFiniteError(f"{name}: row {row} contains NaN or Inf")
    return finalize_procrustes(partial, centre=centre)


# ------------------------------------------------------------------------------ fit
def read_and_sample(X_a, X_b, n_sample, rng, check_rows):
    """Means of ALL rows and ``n_sample`` sampled rows per side, for ``MiniVec2Vec.fit_from_sample``.

    Either side may be a dask array or a numpy array. The means come from one pass over the
    dask sides (partial sums reduced on the workers; a numpy side uses :func:`column_mean`).
    The rows are drawn with :func:`minivec2vec.kernels.rows.sample_indices` from ``rng`` (A first, then B), exactly
    as the in-memory path does, and only the drawn rows are brought to the client.
    """
    dask, _ = _import_dask()
    sides = []
    for X, name in ((X_a, "X_a"), (X_b, "X_b")):
        if is_dask_array(X):
            sides.append(check_dask_embeddings(X, name, min_rows=2))
        else:
            sides.append(check_embeddings(X, name, min_rows=2, reject_zero_rows=True))
    check_rows(sides[0].shape[0], sides[1].shape[0])

    # the sums and the all-zero check of each dask side in one computation: one read of X
    lazy = [(summed_partial(X), X.any(axis=1).all()) for X in sides if is_dask_array(X)]
    computed = iter(dask.compute(*lazy))
    means = []
    for X, name in zip(sides, ("X_a", "X_b")):
        if not is_dask_array(X):
            means.append(column_mean(X))
            continue
        partial, no_zero_row = next(computed)
        mean = partial_means(partial[0])[0]
        if not np.all(np.isfinite(mean)):
            raise NonFiniteError(f"{name}: row {_first_non_finite_row(X)} contains NaN or Inf")
        if not no_zero_row:
            row = int(X.any(axis=1).argmin().compute())
            raise ZeroRowError(f"{name}: row {row} is all zeros (an empty or failed embedding "
                               "has no direction to align)")
        means.append(mean)

    picked = [X if X.shape[0] <= n_sample else X[sample_indices(X.shape[0], n_sample, rng)]
              for X in sides]
    gathered = iter(dask.compute(*[p for p in picked if is_dask_array(p)]))
    rows = [next(gathered) if is_dask_array(p) else p for p in picked]
    return rows[0], rows[1], means[0], means[1]


# ------------------------------------------------------------------------------ transform
def _transform_block(x, W32, row_ids, *, mean_a, mean_b, scale_b, add_mean):
    row_offset = int(row_ids[0]) if row_ids.size else 0
    # one thread per task: Dask's workers run tasks side by side
    return map_rows(x, W32, mean_a, mean_b, scale_b, add_mean, row_offset=row_offset, n_threads=1)


def transform(model, X, add_mean=False, inverse=False):
    """Lazy ``model.transform`` (``inverse_transform`` with ``inverse``) of a dask array:
    float32 (n, d_out), same row chunks as X. W is one key of the graph, shipped once to each
    worker."""
    _, da = _import_dask()
    X = check_dask_embeddings(X, "X", n_features=model.W_.shape[1] if inverse
                              else model.W_.shape[0])
    W32 = model._map_matrix(inverse)
    mean_in, mean_out, scale_out = model._map_frames(inverse)
    W_dask = da.from_array(W32, chunks=W32.shape)
    row_ids = da.arange(X.shape[0], chunks=(X.chunks[0],))
    return da.blockwise(_transform_block, "ij", X, "ik", W_dask, "kj", row_ids, "i",
                        mean_a=np.asarray(mean_in, dtype=np.float64),
                        mean_b=np.asarray(mean_out, dtype=np.float64),
                        scale_b=float(scale_out), add_mean=bool(add_mean),
                        dtype=np.float32, concatenate=True,
                        meta=np.empty((0, 0), dtype=np.float32))


# ------------------------------------------------------------------------------ partial (b)
def _topk_block(queries, database, row_ids, *, k, metric, n_threads):
    scores, indices = topk_partial(queries, database, k, offset=int(row_ids[0]), metric=metric,
                                   n_threads=n_threads)
    out = np.empty(scores.shape, dtype=TOPK_DTYPE)
    out["score"] = scores
    out["index"] = indices
    return out


def _merge_topk_block(block, axis=None, keepdims=True, *, k):
    """Reduction step: the top-k lists side by side in ``block`` (n_queries, m * k), merged
    into one (n_queries, k) list with :func:`merge_topk`."""
    lists = [block[:, start:start + k] for start in range(0, block.shape[1], k)]
    scores = np.ascontiguousarray(lists[0]["score"])
    indices = np.ascontiguousarray(lists[0]["index"])
    for other in lists[1:]:
        scores, indices = merge_topk(scores, indices, np.ascontiguousarray(other["score"]),
                                     np.ascontiguousarray(other["index"]))
    out = np.empty(scores.shape, dtype=TOPK_DTYPE)
    out["score"] = scores
    out["index"] = indices
    return out


def dask_knn(queries, database, k, metric="ip", n_threads=1):
    """Exact k nearest neighbours of dask ``queries`` among the rows of a dask ``database``.

    The dask counterpart of :func:`minivec2vec.knn` (same arguments and results): one top-k
    partial (:func:`~minivec2vec.kernels.partials.topk_partial`) per (query block, database block) with
    global row indices, reduced along the database axis by :func:`merge_topk` in a tree. No
    block of the similarity matrix outlives its task.

    n_threads : threads of each task's kNN kernel (default 1: the Dask workers carry the
    parallelism). Results do not depend on it.

    Returns lazy dask arrays (scores float32, indices int64), both (n_queries, k), chunked like
    the queries; compute them together (``dask.compute(scores, indices)``) so the search runs once.
    """
    _, da = _import_dask()
    if metric not in _METRICS:
        raise InvalidParameterError(f"metric: expected one of {_METRICS}, got {metric!r}")
    queries = check_dask_embeddings(da.asarray(queries), "queries")
    database = check_dask_embeddings(da.asarray(database), "database",
                                     n_features=queries.shape[1])
    k = check_positive_int(k, "k")
    if k > database.shape[0]:
        raise TooFewRowsError(f"k={k} is larger than the database ({database.shape[0]} rows)")
    meta = np.empty((0, 0), dtype=TOPK_DTYPE)
    row_ids = da.arange(database.shape[0], chunks=(database.chunks[0],))
    parts = da.blockwise(_topk_block, "ij", queries, "ia", database, "ja", row_ids, "j",
                         k=k, metric=metric, n_threads=n_threads, dtype=TOPK_DTYPE,
                         concatenate=True, adjust_chunks={"j": k}, meta=meta)
    merge = functools.partial(_merge_topk_block, k=k)
    merged = da.reduction(parts, chunk=merge, combine=merge, aggregate=merge, axis=1,
                          keepdims=True, output_size=k, dtype=TOPK_DTYPE, concatenate=True,
                          meta=meta)
    return merged["score"], merged["index"]
