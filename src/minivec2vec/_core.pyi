"""Type stub of the compiled module ``minivec2vec._core`` (csrc/bindings.cpp).

Every array argument is checked for dtype, 2-D shape and row contiguity, never copied; the
top-k functions that take ``scores`` / ``indices`` heaps update those caller-owned arrays in
place. All of them release the GIL while they work.
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]

def fold_tile(tile: Float32Array, offset: int, scores: Float32Array,
              indices: Int64Array) -> None:
    """Fold a similarity tile (n_rows, n_cols) into per-row running top-k heaps (n_rows, k),
    column j of the tile being global index ``offset + j``."""

class Int8Database:
    """float32 rows quantised row by row to int8 codes, packed for :func:`search_int8` and
    :func:`search_int8_avx2` (needs AVX-512 VNNI or AVX2; at most 65,536 features)."""
    n_rows: int
    n_features: int
    @property
    def nbytes(self) -> int: ...
    def __init__(self, rows: Float32Array, bias: npt.NDArray[np.float32] | None = None) -> None:
        """Quantise and pack ``rows`` (n, d); the score of row j becomes q . x_j + bias[j]."""

def has_vnni() -> bool:
    """True when this CPU can run :func:`search_int8` (AVX-512 VNNI)."""

def has_avx2() -> bool:
    """True when this CPU and OS can run :func:`search_int8_avx2` (AVX2 + FMA, YMM state)."""

def search_int8(queries: Float32Array, packed: Int8Database, rows: Float32Array, offset: int,
                scores: Float32Array, indices: Int64Array) -> None:
    """Exact top-k by inner product, screened with int8 dot products with a rigorous error
    bound and re-scored in float32 from ``rows`` (the database ``packed`` was built from)."""

def search_int8_avx2(queries: Float32Array, packed: Int8Database, rows: Float32Array,
                     offset: int, scores: Float32Array, indices: Int64Array) -> None:
    """:func:`search_int8` with an AVX2 kernel (vpmaddubsw / vpmaddwd, 6-bit query codes): the
    same arguments, the same exact top-k."""

def rows_times(X: Float32Array, W: Float32Array, out: Float32Array, n_threads: int) -> None:
    """``out = X @ W`` in float32, each element summed in a fixed order, so a row's result does
    not depend on its block, its position or the thread count."""

def has_fma() -> bool:
    """True when :func:`rows_times` uses fused multiply-adds (AVX2 + FMA) on this CPU."""

def sort_topk(scores: Float32Array, indices: Int64Array) -> None:
    """Sort running top-k heaps in place into best-first order (ties: lower index first)."""

def merge_topk(scores_a: Float32Array, indices_a: Int64Array, scores_b: Float32Array,
               indices_b: Int64Array) -> tuple[Float32Array, Int64Array]:
    """Merge two best-first top-k lists per row into new (scores, indices) arrays."""

class NoPerfectMatchingError(ValueError):
    """Raised by :func:`sparse_assignment` when the candidate edges admit no perfect matching."""

def sparse_assignment(columns: Int64Array, scores: Float32Array,
                      n_cols: int) -> tuple[Int64Array, Int64Array]:
    """Exact maximum-total-score perfect matching of the n rows into ``n_cols`` >= n columns,
    row i taking one of ``columns[i]`` (int64 (n, k), C-contiguous, in [0, n_cols)) with the
    finite scores ``scores[i]`` (float32, same shape). Returns (rows, cols), int64 (n,), rows
    ascending; deterministic. Raises :class:`NoPerfectMatchingError` when there is none."""

def row_topk(matrix: Float32Array, k: int) -> tuple[Float32Array, Int64Array]:
    """The k best entries of every row of ``matrix`` (n, n_cols), 1 <= k <= n_cols: higher
    score first, the lower column on equal scores, NaN below every number. Returns new
    (scores float32 (n, k), columns int64 (n, k)), each row best-first."""
