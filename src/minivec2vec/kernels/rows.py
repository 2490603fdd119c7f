"""The row preparation every map shares: draw the sampled rows, column means, centre and
L2-normalise, and map rows through W (in memory, streamed, on Dask: the same bytes)."""
from __future__ import annotations

import numpy as np

from .. import _core
from ..exceptions import ZeroRowError
from .._runtime.validation import check_rows
from .partials import partial_means, procrustes_partial
from .._runtime.blocks import BLOCK_ROWS, SUM_ROWS

_BLOCK_ROWS = BLOCK_ROWS   # a module attribute, so that tests can make the blocks small


def sample_indices(n, n_rows, rng):
    """All of range(n) when n <= ``n_rows`` (no draw), else ``n_rows`` sorted indices drawn
    uniformly without replacement (in file order, so files are read forwards)."""
    if n <= n_rows:
        return np.arange(n)
    return np.sort(rng.choice(n, size=n_rows, replace=False))


def sample_rows(X, n_rows, rng):
    """X itself when it has at most ``n_rows`` rows, else the rows of :func:`sample_indices`."""
    if X.shape[0] <= n_rows:
        return X
    return X[sample_indices(X.shape[0], n_rows, rng)]


def column_mean(X):
    """float64 column means, from the one-sided Procrustes partial of X's rows (summed in the
    same fixed sub-blocks as :func:`minivec2vec.io.sources.scan`, so bit-identical to it)."""
    return partial_means(procrustes_partial(X))[0]


def centre_normalise(X, mean, name, row_offset=0, out=None):
    """float32 copy of X (or ``out``, which may be X itself), centred with ``mean`` and
    L2-normalised row by row."""
    if out is None:
        out = np.empty(X.shape, dtype=np.float32)
    mean32 = mean.astype(np.float32)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = out[start:start + _BLOCK_ROWS]
        np.subtract(X[start:start + _BLOCK_ROWS], mean32, out=block, casting="unsafe")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        zero = np.flatnonzero(norms <= 1e-12 * max(1.0, float(np.abs(mean32).max())))
        if zero.size:
            raise ZeroRowError(f"{name}: row {row_offset + start + int(zero[0])} is zero after "
                             "centring (equal to the training mean): it has no direction to map")
        block /= norms[:, None]
    return out


def mean_centred_norm(X, mean, block_rows=SUM_ROWS):
    """Mean norm of the centred rows (float64 blocks of ``block_rows``: two temporaries of
    block_rows x d x 8 bytes, 100 MB at d = 768, small beside the fit's planned arrays)."""
    total = 0.0
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows].astype(np.float64) - mean
        total += np.sqrt(np.einsum("ij,ij->i", block, block)).sum()
    return total / X.shape[0]


def map_rows(X, W32, mean_a, mean_b, scale_b, add_mean, row_offset=0, out=None, n_threads=1):
    """The transform of the rows X: refuse NaN/Inf and all-zero rows, centre with mean_a,
    L2-normalise, times W32 (float32); with ``add_mean`` rescaled by scale_b and mean_b added.
    float32 (n, d_b), written into ``out`` when given.

    The product is :func:`minivec2vec._core.rows_times`, not BLAS: each row's bytes depend on
    that row alone, so in memory, streamed in any chunk size, resumed, on Dask or with any
    ``n_threads``, the same row maps to the same bytes (OpenBLAS's sgemm does not promise that:
    on AVX2 CPUs its rounding changes with the row's position in the call and the thread count)."""
    check_rows(X, "X", finite=True, nonzero=True, row_offset=row_offset)
    if out is None:
        out = np.empty((X.shape[0], W32.shape[1]), dtype=np.float32)
    W32 = np.ascontiguousarray(W32, dtype=np.float32)
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        block = centre_normalise(X[start:start + _BLOCK_ROWS], mean_a, "X",
                                  row_offset=row_offset + start)
        _core.rows_times(block, W32, out[start:start + _BLOCK_ROWS], n_threads)
    if add_mean:
        out *= np.float32(scale_b)
        out += np.asarray(mean_b).astype(np.float32)
    return out
