"""Stage 2: pseudo-pairs from relative representations.

Every row is described by its cosine similarities to the anchors of its own space; the rows of
the two spaces are then comparable coordinate by coordinate. Each A row's pseudo-target is the
mean of its k nearest B rows in that description (cosine), found by the blocked kNN, and only the
cross-covariance of sources and pseudo-targets is kept for Procrustes.
"""
from __future__ import annotations

import numpy as np

from .._runtime.blocks import BLOCK_ROWS
from ..kernels.knn import _knn, normalise_rows
from ..kernels.procrustes import neighbour_cross_covariance


def relative_representation(X, anchors, block_rows=BLOCK_ROWS):
    """cos(X, anchors) for unit-norm rows X: (n, n_anchors) float32, computed in blocks."""
    A_t = np.ascontiguousarray(normalise_rows(np.array(anchors, dtype=np.float32)).T)
    out = np.empty((X.shape[0], A_t.shape[1]), dtype=np.float32)
    for start in range(0, X.shape[0], block_rows):
        np.matmul(X[start:start + block_rows], A_t, out=out[start:start + block_rows])
    return out


def pseudo_pair_cross_covariance(X_a, X_b, anchors_a, anchors_b, n_neighbors, n_threads=None,
                                 memory_limit=None):
    """d_a x d_b cross-covariance of every A row with the mean of its k matched B rows."""
    # the descriptions are fresh arrays: normalised in place, cosine is the inner product, and
    # the kNN needs no normalised copy of the (n_b x n_anchors) database
    rel_a = normalise_rows(relative_representation(X_a, anchors_a))
    rel_b = normalise_rows(relative_representation(X_b, anchors_b))
    _, neighbours = _knn(rel_a, rel_b, n_neighbors, metric="ip", n_threads=n_threads,
                        memory_limit=memory_limit)
    return neighbour_cross_covariance(X_a, X_b, neighbours, n_threads=n_threads)
