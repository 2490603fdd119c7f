"""The two partial states of the method, as pure functions with a merge.

Any engine that maps a function over blocks of rows and reduces the results (Dask, Spark, Ray,
a loop over files) can drive them; :mod:`minivec2vec.distributed.dask` drives them with Dask.

(a) **Procrustes partial sums** of a block of source rows X (and, for a supervised fit, the
    paired target rows Y): the cross-covariance X^T Y, the sums of X's and Y's rows, and the row
    count. :func:`merge_procrustes_partials` adds two partials (associative, commutative);
    :func:`partial_means` gives the column means and :func:`finalize_procrustes` the centred
    cross-covariance's (semi-)orthogonal Procrustes map. A one-sided partial (Y omitted) holds
    only the row sums and the count: that is how ``fit`` computes each side's mean.
(b) **Per-query top-k lists** of queries against one block of database rows, with global row
    indices: :func:`topk_partial`. Two lists merge with :func:`~minivec2vec.kernels.knn.merge_topk`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..exceptions import InvalidParameterError, PartialStateError, ShapeError
from .knn import knn, merge_topk  # noqa: F401  (merge_topk is the merge of partial (b))
from .procrustes import procrustes
from .._runtime.blocks import SUM_ROWS

# rows summed at once, in order: the same fixed sub-blocks as sources.scan, so the mean of an
# array is bit-identical whichever of the two computes it
_BLOCK_ROWS = SUM_ROWS
_CROSS_BLOCK_ROWS = SUM_ROWS   # rows converted to float64 at once for the cross-covariance


@dataclass(frozen=True, eq=False)
class ProcrustesPartial:
    """Partial sums of a set of rows (see the module docstring); all sums are float64."""

    sum_x: np.ndarray                          # (d_a,) sum of the source rows
    count: int                                 # number of rows
    sum_y: Optional[np.ndarray] = None         # (d_b,) sum of the paired target rows
    cross_covariance: Optional[np.ndarray] = None  # (d_a, d_b) X^T Y, uncentred

    @property
    def paired(self) -> bool:
        return self.cross_covariance is not None


def procrustes_partial(X, Y=None) -> ProcrustesPartial:
    """Partial sums of the rows of X (n x d_a), and of the paired rows of Y (n x d_b) if given.

    Pure: reads X and Y block by block, never modifies them. Sums and products are float64.
    """
    X = _as_matrix(X, "X")
    sum_x = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        sum_x += X[start:start + _BLOCK_ROWS].sum(axis=0, dtype=np.float64)
    if Y is None:
        return ProcrustesPartial(sum_x=sum_x, count=int(X.shape[0]))
    Y = _as_matrix(Y, "Y")
    if Y.shape[0] != X.shape[0]:
        raise ShapeError(f"Y: has {Y.shape[0]} rows, X has {X.shape[0]}: the rows must be paired")
    sum_y = np.zeros(Y.shape[1], dtype=np.float64)
    cross = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float64)
    for start in range(0, X.shape[0], _CROSS_BLOCK_ROWS):
        x = X[start:start + _CROSS_BLOCK_ROWS].astype(np.float64)
        y = Y[start:start + _CROSS_BLOCK_ROWS].astype(np.float64)
        cross += x.T @ y
        sum_y += y.sum(axis=0)
    return ProcrustesPartial(sum_x=sum_x, count=int(X.shape[0]), sum_y=sum_y,
                             cross_covariance=cross)


def merge_procrustes_partials(first: ProcrustesPartial, second: ProcrustesPartial) -> ProcrustesPartial:
    """The partial of the union of two disjoint sets of rows: every sum added."""
    _check_partial(first, "merge_procrustes_partials")
    _check_partial(second, "merge_procrustes_partials")
    if first.sum_x.shape != second.sum_x.shape or first.paired != second.paired:
        raise PartialStateError("merge_procrustes_partials: the partials describe different data "
                         f"(source dims {first.sum_x.shape[0]} and {second.sum_x.shape[0]}, "
                         f"paired {first.paired} and {second.paired})")
    if not first.paired:
        return ProcrustesPartial(sum_x=first.sum_x + second.sum_x,
                                 count=first.count + second.count)
    if first.sum_y.shape != second.sum_y.shape:
        raise PartialStateError("merge_procrustes_partials: the partials have different target dims "
                         f"({first.sum_y.shape[0]} and {second.sum_y.shape[0]})")
    return ProcrustesPartial(sum_x=first.sum_x + second.sum_x, count=first.count + second.count,
                             sum_y=first.sum_y + second.sum_y,
                             cross_covariance=first.cross_covariance + second.cross_covariance)


def partial_means(partial: ProcrustesPartial):
    """(mean of the source rows, mean of the target rows or None), float64."""
    _check_partial(partial, "partial_means")
    if partial.count == 0:
        raise PartialStateError("partial_means: the partial holds no rows")
    mean_y = None if partial.sum_y is None else partial.sum_y / partial.count
    return partial.sum_x / partial.count, mean_y


def finalize_procrustes(partial: ProcrustesPartial, centre: bool = True) -> np.ndarray:
    """The (semi-)orthogonal W (d_a x d_b) maximising trace(W^T M), M the cross-covariance of
    the paired rows (centred with their means when ``centre``: M = X^T Y - n mean_x mean_y^T)."""
    _check_partial(partial, "finalize_procrustes")
    if not partial.paired:
        raise PartialStateError("finalize_procrustes: the partial has no cross-covariance (it was "
                         "computed without target rows Y)")
    M = partial.cross_covariance
    if centre:
        mean_x, mean_y = partial_means(partial)
        M = M - partial.count * np.outer(mean_x, mean_y)
    return procrustes(M)


def topk_partial(queries, database_block, k, offset=0, metric="ip", n_threads=None):
    """Top-k of every query among the rows of one database block, with GLOBAL row indices.

    ``offset`` is the global index of the block's first row. When the block has fewer than k
    rows the lists are padded with empty slots (score -inf, index -1), which
    :func:`~minivec2vec.kernels.knn.merge_topk` ranks last. Returns (scores float32, indices int64),
    both (n_queries, k), best first; merged over all blocks they equal :func:`knn` on the
    whole database.
    """
    n_block = np.shape(database_block)[0]
    k_block = min(int(k), n_block)
    if k_block < 1:
        raise (ShapeError if n_block < 1 else InvalidParameterError)(
            f"topk_partial: k must be >= 1 and the block non-empty (k={k}, {n_block} rows)")
    scores, indices = knn(queries, database_block, k_block, metric=metric, n_threads=n_threads)
    indices += int(offset)
    if k_block < k:
        n_queries = scores.shape[0]
        scores = np.concatenate([scores, np.full((n_queries, k - k_block), -np.inf, np.float32)], axis=1)
        indices = np.concatenate([indices, np.full((n_queries, k - k_block), -1, np.int64)], axis=1)
    return scores, indices


def _check_partial(partial, what):
    """PartialStateError unless ``partial`` is a ProcrustesPartial whose sums fit together."""
    if not isinstance(partial, ProcrustesPartial):
        raise PartialStateError(f"{what}: expected a ProcrustesPartial, got "
                                f"{type(partial).__name__}")
    sum_x = np.asarray(partial.sum_x)
    ok = (sum_x.ndim == 1 and isinstance(partial.count, (int, np.integer)) and partial.count >= 0
          and (partial.sum_y is None) == (partial.cross_covariance is None))
    if ok and partial.paired:
        ok = (np.ndim(partial.sum_y) == 1 and np.shape(partial.cross_covariance)
              == (sum_x.shape[0], np.shape(partial.sum_y)[0]))
    if not ok:
        raise PartialStateError(f"{what}: the partial is inconsistent (sum_x {sum_x.shape}, "
                                f"count {partial.count!r}, sum_y "
                                f"{None if partial.sum_y is None else np.shape(partial.sum_y)}, "
                                "cross_covariance "
                                f"{None if partial.cross_covariance is None else np.shape(partial.cross_covariance)})")


def _as_matrix(X, name):
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ShapeError(f"{name}: expected a 2-D array (n_rows, n_features), got "
                         f"{getattr(X, 'shape', type(X).__name__)}")
    return X
