"""Input checks: one place names the problem, and every public entry point uses it."""
from __future__ import annotations

import numpy as np
import pytest

from minivec2vec import MiniVec2Vec, evaluate, kmeans, knn
from minivec2vec._runtime.validation import (check_embeddings, check_positive_int, check_rows,
                                             check_random_state, parse_memory)


# ------------------------------------------------------------------------------------ embeddings
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_row_is_named(bad, dtype):
    X = np.ones((20, 3), dtype=dtype)
    X[13, 1] = bad
    with pytest.raises(ValueError, match=r"^emb: row 13 contains NaN or Inf$"):
        check_embeddings(X, "emb")


def test_first_bad_row_is_named_across_blocks():
    X = np.ones((1000, 2), dtype=np.float32)
    X[[700, 950], 0] = np.nan
    with pytest.raises(ValueError, match="row 700 "):
        check_rows(X, "X", block_rows=64)
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="row 3 "):
        check_rows(X, "X", block_rows=64)


def test_float16_overflow_inf_is_caught():
    with np.errstate(over="ignore"):
        X = np.array([[1.0, 2.0], [70000.0, 0.0]]).astype(np.float16)   # 70000 -> inf
    assert np.isinf(X[1, 0])
    with pytest.raises(ValueError, match="row 1"):
        check_embeddings(X, "X")


def test_check_finite_can_be_skipped():
    X = np.full((2, 2), np.nan, dtype=np.float32)
    assert check_embeddings(X, "X", check_finite=False) is X


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.bool_,
                                   np.complex64, np.object_])
def test_non_float_dtype_raises_type_error(dtype):
    X = np.ones((4, 3), dtype=dtype)
    with pytest.raises(TypeError, match=r"emb: expected a float16, float32 or float64 array"):
        check_embeddings(X, "emb")


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_wrong_number_of_dimensions_raises(shape):
    X = np.ones(shape, dtype=np.float32)
    with pytest.raises(ValueError, match=f"expected a 2-D array .*got {len(shape)}-D"):
        check_embeddings(X, "emb")


def test_shape_checks():
    with pytest.raises(ValueError, match="0 features"):
        check_embeddings(np.ones((3, 0), dtype=np.float32), "X")
    with pytest.raises(ValueError, match="has 2 rows, at least 5"):
        check_embeddings(np.ones((2, 3), dtype=np.float32), "X", min_rows=5)
    with pytest.raises(ValueError, match="has 3 features, expected 4"):
        check_embeddings(np.ones((2, 3), dtype=np.float32), "X", n_features=4)


def test_float_arrays_are_not_copied_and_lists_are_converted():
    for dtype in (np.float16, np.float32, np.float64):
        X = np.ones((3, 2), dtype=dtype)
        assert check_embeddings(X, "X") is X
    out = check_embeddings([[1.0, 2.0], [3.0, 4.0]], "X")
    assert out.dtype == np.float64 and out.shape == (2, 2)
    with pytest.raises(TypeError):
        check_embeddings([[1, 2], [3, 4]], "X")          # integers
    with pytest.raises(TypeError, match="expected a 2-D numpy array, got str"):
        check_embeddings("not an array", "X")


@pytest.mark.parametrize("call", [
    lambda X: knn(X, np.ones((4, 3), dtype=np.float32), 1),
    lambda X: knn(np.ones((4, 3), dtype=np.float32), X, 1),
    lambda X: kmeans(X, 2),
    lambda X: evaluate(X, np.ones((6, 3), dtype=np.float32)),
    lambda X: MiniVec2Vec().fit(X, np.ones((6, 3), dtype=np.float32)),
])
def test_public_entry_points_validate(call):
    X = np.ones((6, 3), dtype=np.float32)
    X[4, 2] = np.nan
    with pytest.raises(ValueError, match="row 4 contains NaN or Inf"):
        call(X)
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        call(np.ones((6, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="2-D"):
        call(np.ones(6, dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        call(np.ones((6, 3, 1), dtype=np.float32))


# ------------------------------------------------------------------------------------ memory
@pytest.mark.parametrize("text,expected", [
    ("2GB", 2 * 10**9),
    ("512MiB", 512 * 2**20),
    ("512 MiB", 512 * 2**20),
    (" 1.5GiB ", int(1.5 * 2**30)),
    ("150kB", 150_000),
    ("3tb", 3 * 10**12),
    ("1KiB", 1024),
    ("4096", 4096),
    ("100B", 100),
    (".5MB", 500_000),
])
def test_parse_memory_strings(text, expected):
    assert parse_memory(text) == expected


def test_parse_memory_numbers_and_none():
    assert parse_memory(None) is None
    assert parse_memory(12345) == 12345
    assert parse_memory(np.int64(7)) == 7
    assert parse_memory(2e9) == 2 * 10**9


@pytest.mark.parametrize("text", ["", "GB", "2XB", "2 G B", "-1GB", "1e9", "two GB", "2GB2",
                                  "0GB", "0"])
def test_parse_memory_bad_strings_raise(text):
    with pytest.raises(ValueError, match="memory_limit"):
        parse_memory(text)


@pytest.mark.parametrize("value,exc", [(0, ValueError), (-5, ValueError), (0.4, ValueError),
                                       (True, TypeError), ([1], TypeError), (b"1GB", TypeError)])
def test_parse_memory_bad_values_raise(value, exc):
    with pytest.raises(exc, match="memory_limit"):
        parse_memory(value)


def test_bad_memory_limit_is_refused_by_knn():
    X = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="memory_limit: cannot parse"):
        knn(X, X, 1, memory_limit="lots")


# ------------------------------------------------------------------------------------ scalars
def test_check_positive_int():
    assert check_positive_int(3, "k") == 3
    assert check_positive_int(np.int32(3), "k") == 3
    assert check_positive_int(0, "k", minimum=0) == 0
    with pytest.raises(ValueError, match="k: must be >= 1, got 0"):
        check_positive_int(0, "k")
    for bad in (1.0, True, "3", None):
        with pytest.raises(TypeError, match="k: expected an integer"):
            check_positive_int(bad, "k")


def test_check_random_state():
    g = np.random.default_rng(1)
    assert check_random_state(g) is g
    assert check_random_state(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    assert isinstance(check_random_state(None), np.random.Generator)
    for bad in ("seed", 1.5, np.random.RandomState(0)):
        with pytest.raises(TypeError, match="random_state"):
            check_random_state(bad)


@pytest.mark.parametrize("n_threads,exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                           (True, TypeError)])
def test_bad_n_threads_raises(n_threads, exc):
    X = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(exc, match="n_threads"):
        knn(X, X, 1, n_threads=n_threads)


# ------------------------------------------------------------------------------------ exception types
import minivec2vec as _mv  # noqa: E402
from minivec2vec import (DimensionMismatchError, DtypeError, InputError,  # noqa: E402
                         MemoryLimitError, MiniVec2VecError, NonFiniteError, ShapeError,
                         TooFewRowsError, ZeroRowError)


def test_hierarchy_keeps_builtin_bases_and_is_exported():
    for cls in (InputError, NonFiniteError, ZeroRowError, ShapeError, DimensionMismatchError,
                TooFewRowsError):
        assert issubclass(cls, ValueError) and issubclass(cls, MiniVec2VecError)
    assert issubclass(DtypeError, TypeError) and issubclass(DtypeError, MiniVec2VecError)
    assert issubclass(MemoryLimitError, MemoryError)
    assert issubclass(_mv.OutputPathError, OSError)
    assert issubclass(_mv.NotFittedError, RuntimeError)
    for name in ("MiniVec2VecError", "InputError", "NonFiniteError", "ZeroRowError", "ShapeError",
                 "DimensionMismatchError", "TooFewRowsError", "DtypeError", "MapFileError",
                 "MapFileVersionError", "OutputPathError", "MemoryLimitError", "NotFittedError"):
        assert name in _mv.__all__ and isinstance(getattr(_mv, name), type)


@pytest.mark.parametrize("X,exc,match", [
    (np.array([[1.0, np.nan]]), NonFiniteError, "row 0 contains NaN or Inf"),
    (np.zeros((0, 3), dtype=np.float32), ShapeError, "is empty"),
    (np.zeros((3, 0), dtype=np.float32), ShapeError, "0 features"),
    (np.ones(4, dtype=np.float32), ShapeError, "2-D"),
    (np.ones((2, 2, 2), dtype=np.float32), ShapeError, "2-D"),
    (np.ones((2, 2), dtype=np.int32), DtypeError, "int32"),
    (np.ones((2, 2), dtype=np.complex128), DtypeError, "complex128"),
    (np.array([[1.0, None]], dtype=object), DtypeError, "object"),
    ([[1.0, None]], DtypeError, "object"),
])
def test_each_problem_has_its_type(X, exc, match):
    with pytest.raises(exc, match=match):
        check_embeddings(X, "emb")


def test_zero_rows_are_named_when_asked():
    X = np.ones((300, 4), dtype=np.float16)
    X[211] = 0
    assert check_embeddings(X, "emb") is X                     # kernels accept zero rows
    with pytest.raises(ZeroRowError, match="emb: row 211 is all zeros"):
        check_embeddings(X, "emb", reject_zero_rows=True)
    X[5, 0] = np.inf                                           # the earlier problem is named
    with pytest.raises(NonFiniteError, match="row 5"):
        check_embeddings(X, "emb", reject_zero_rows=True)


def test_row_checks_work_block_by_block():
    """The NaN and zero-row checks never build a full-size temporary: they see blocks."""
    from minivec2vec._runtime.validation import check_rows
    X = np.ones((1000, 3), dtype=np.float32)
    X[999] = 0
    seen = []

    class Spy(np.ndarray):
        def __getitem__(self, item):
            out = super().__getitem__(item)
            if isinstance(item, slice):
                seen.append(out.shape[0])
            return out

    with pytest.raises(ZeroRowError, match="row 999"):
        check_rows(X.view(Spy), "X", nonzero=True, block_rows=128)
    assert max(seen) == 128 and sum(seen) == 1000


def test_model_rejects_all_zero_rows(rotation_split):
    A = np.array(rotation_split.train_a[:1000])
    B = rotation_split.train_b[:1000]
    A[321] = 0
    with pytest.raises(ZeroRowError, match="X_a: row 321 is all zeros"):
        _mv.MiniVec2Vec().fit(A, B)
    model = _mv.MiniVec2Vec()
    model.W_, model.mean_a_ = np.eye(384), np.zeros(384)
    model.mean_b_, model.scale_b_, model.n_features_a_ = np.zeros(384), 1.0, 384
    with pytest.raises(ZeroRowError, match="X: row 2 is all zeros"):
        model.transform(np.vstack([A[:2], np.zeros((1, 384), np.float16)]))


def test_too_few_rows_and_k_larger_than_database():
    X = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    with pytest.raises(TooFewRowsError, match="k=11 is larger than the database"):
        knn(X, X, 11)
    with pytest.raises(TooFewRowsError, match="n_clusters=11 is larger than the number of rows"):
        kmeans(X, 11)
    with pytest.raises(DimensionMismatchError, match="database: has 4 features, expected 3"):
        knn(X, np.ones((5, 4), dtype=np.float32), 1)


def test_memory_limit_too_small_for_one_block_in_knn():
    X = np.random.default_rng(0).standard_normal((500, 32)).astype(np.float32)
    with pytest.raises(MemoryLimitError, match="memory_limit=1000 bytes is too small"):
        knn(X, X, 10, memory_limit=1000)
