"""The interface every input adapter implements (the sources of :mod:`.sources` and the
vector stores of :mod:`.stores`): a matrix read block by block."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..exceptions import InvalidParameterError


class EmbeddingSource:
    """A (n_rows, n_features) float16/32/64 matrix that can be read block by block."""

    name: str
    n_rows: int
    n_features: int
    dtype: np.dtype

    def blocks(self, block_rows: int, first: int = 0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (start, rows[start:start + block_rows]) for start = first, first + block_rows,
        ... in order. A yielded block may be a reused buffer: it is valid until the next one is
        requested."""
        raise NotImplementedError

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a new array of the source's dtype."""
        raise NotImplementedError

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the given sorted indices, as a new (len(rows), n_features) array."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.shape[0], self.n_features), dtype=self.dtype)
        if rows.size == 0:
            return out
        if rows[0] < 0 or rows[-1] >= self.n_rows or np.any(np.diff(rows) < 0):
            raise InvalidParameterError(f"{self.name}: take() needs sorted row indices in [0, {self.n_rows})")
        # runs of consecutive indices are read with one call each
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(np.arange(rows.shape[0]), breaks):
            out[run[0]:run[-1] + 1] = self.read(int(rows[run[0]]), int(rows[run[-1]]) + 1)
        return out

    def fingerprint(self):
        """A JSON value identifying the content (paths, sizes, modification times), or None
        when the source cannot be identified across processes (in-memory arrays)."""
        return None

    def describe(self) -> str:
        return self.name

    def row_bytes(self) -> int:
        return self.n_features * self.dtype.itemsize
