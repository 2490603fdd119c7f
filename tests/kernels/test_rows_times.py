"""The transform's product, _core.rows_times: a row's bytes depend on that row alone (not on the
block it is in, its place there or the thread count), and the values are those of X @ W within
the float32 rounding bound of a d_a-term dot product."""
from __future__ import annotations

import numpy as np
import pytest

from minivec2vec import _core

SHAPES = [(1, 1), (3, 1), (16, 16), (100, 70), (384, 384), (384, 256), (256, 384), (17, 33)]


def _bound(X, W):
    """|fl(x . w) - x . w| <= d * eps * sum_k |x_k w_kj| (float32 sequential summation)."""
    return X.shape[1] * np.finfo(np.float32).eps * (np.abs(X).astype(np.float64)
                                                     @ np.abs(W).astype(np.float64))


@pytest.mark.parametrize("d_a,d_b", SHAPES)
def test_rows_times_matches_float64_product(d_a, d_b):
    rng = np.random.default_rng(d_a * 1000 + d_b)
    X = rng.standard_normal((1031, d_a), dtype=np.float32)
    W = rng.standard_normal((d_a, d_b), dtype=np.float32)
    out = np.full((X.shape[0], d_b), np.nan, dtype=np.float32)
    _core.rows_times(X, W, out, 2)
    exact = X.astype(np.float64) @ W.astype(np.float64)
    assert np.all(np.abs(out - exact) <= _bound(X, W))
    # not a zero or garbage result that the bound would also accept for tiny inputs
    assert np.corrcoef(out.ravel(), exact.ravel())[0, 1] > 0.999999


@pytest.mark.parametrize("d_a,d_b", [(384, 384), (17, 33), (5, 2)])
def test_a_row_gives_the_same_bytes_wherever_it_is_and_whatever_the_threads(d_a, d_b):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((4099, d_a), dtype=np.float32)
    W = rng.standard_normal((d_a, d_b), dtype=np.float32)
    whole = np.empty((X.shape[0], d_b), dtype=np.float32)
    _core.rows_times(X, W, whole, 1)
    for n_threads in (1, 2, 3, 8):
        for offset, block in ((0, 4099), (1, 1000), (3, 7), (5, 1), (4098, 1), (2, 4097)):
            part = np.empty((block, d_b), dtype=np.float32)
            _core.rows_times(X[offset:offset + block], W, part, n_threads)
            assert part.tobytes() == whole[offset:offset + block].tobytes(), (n_threads, offset)


def test_rows_times_reads_strided_rows_and_writes_into_a_slice():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((300, 40), dtype=np.float32)
    X = big[:, :24]                       # rows of stride 40 floats
    W = rng.standard_normal((24, 9), dtype=np.float32)
    out = np.zeros((300, 20), dtype=np.float32)
    _core.rows_times(X, W, out[:, 5:14], 2)
    reference = np.empty((300, 9), dtype=np.float32)
    _core.rows_times(np.ascontiguousarray(X), W, reference, 1)
    assert out[:, 5:14].tobytes() == reference.tobytes()
    assert not out[:, :5].any() and not out[:, 14:].any()


def test_rows_times_with_no_rows_writes_nothing():
    out = np.empty((0, 4), dtype=np.float32)
    _core.rows_times(np.empty((0, 3), dtype=np.float32), np.ones((3, 4), dtype=np.float32), out, 2)


@pytest.mark.parametrize("X,W,out,n_threads,exc,words", [
    (np.ones((4, 3)), np.ones((3, 2), np.float32), np.empty((4, 2), np.float32), 1,
     TypeError, "X: expected dtype float32"),
    (np.ones((4, 3), np.float32), np.ones((2, 2), np.float32), np.empty((4, 2), np.float32), 1,
     ValueError, "X has 3 columns but W has 2 rows"),
    (np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), np.empty((5, 2), np.float32), 1,
     ValueError, "out must have shape (4, 2)"),
    (np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), np.empty((4, 2), np.float32), 0,
     ValueError, "n_threads must be >= 1"),
    (np.ones((4, 3), np.float32), np.ones((3, 4), np.float32)[:, ::2],
     np.empty((4, 2), np.float32), 1, ValueError, "rows must be contiguous"),
    (np.ones((4, 3), np.float32), np.ones((3, 2), np.float32),
     np.empty((4, 2), np.float32)[::-1], 1, ValueError, "row stride"),
])
def test_rows_times_refuses_what_it_cannot_use_without_a_copy(X, W, out, n_threads, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)")):
        _core.rows_times(X, W, out, n_threads)


def test_read_only_output_is_refused():
    out = np.empty((4, 2), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _core.rows_times(np.ones((4, 3), np.float32), np.ones((3, 2), np.float32), out, 1)
