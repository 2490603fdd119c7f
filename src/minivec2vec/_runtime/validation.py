"""Input checks shared by every public entry point: one place that names the problem."""
from __future__ import annotations

import numbers
import os
import re
import tempfile

import numpy as np

from .blocks import BLOCK_ROWS
from ..exceptions import (DimensionMismatchError, DtypeError, InvalidParameterError, NonFiniteError,
                          OutputDirectoryNotFoundError, OutputPathError, ParameterTypeError,
                          ShapeError, TooFewRowsError, ZeroRowError)

_FLOAT_KINDS = (np.float16, np.float32, np.float64)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def check_embeddings(X, name: str, *, min_rows: int = 1, n_features: int | None = None,
                     check_finite: bool = True, reject_zero_rows: bool = False) -> np.ndarray:
    """Return ``X`` as a 2-D floating array (no copy for float16/32/64 arrays, whatever their
    strides or writeability).

    Raises DtypeError (a TypeError) for non-float dtypes; ShapeError for an array that is not
    2-D, has no rows or no features; TooFewRowsError for fewer than ``min_rows`` rows;
    DimensionMismatchError for a feature count other than ``n_features``; NonFiniteError for
    NaN/Inf and, with ``reject_zero_rows``, ZeroRowError for an all-zero row (all ValueErrors).
    """
    if not isinstance(X, np.ndarray):
        if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
            X = np.asarray(X)
        else:
            raise DtypeError(f"{name}: expected a 2-D numpy array, got {type(X).__name__}")
    check_layout(X.dtype, X.shape, name, min_rows=min_rows, n_features=n_features)
    if check_finite or reject_zero_rows:
        check_rows(X, name, finite=check_finite, nonzero=reject_zero_rows)
    return X


def check_layout(dtype, shape, name: str, *, min_rows: int = 1,
                 n_features: int | None = None) -> None:
    """The checks that need no data: a float16/32/64 dtype (DtypeError), 2-D with rows and
    features (ShapeError), at least ``min_rows`` rows (TooFewRowsError), ``n_features`` columns
    when given (DimensionMismatchError). Shared by numpy and dask inputs."""
    if np.dtype(dtype).type not in _FLOAT_KINDS:
        raise DtypeError(f"{name}: expected a float16, float32 or float64 array, got dtype {dtype}")
    if len(shape) != 2:
        raise ShapeError(f"{name}: expected a 2-D array (n_rows, n_features), got {len(shape)}-D "
                         f"with shape {tuple(shape)}")
    if shape[0] == 0:
        raise ShapeError(f"{name}: is empty (0 rows)")
    if shape[1] == 0:
        raise ShapeError(f"{name}: has 0 features")
    if shape[0] < min_rows:
        raise TooFewRowsError(f"{name}: has {shape[0]} rows, at least {min_rows} are needed")
    if n_features is not None and shape[1] != n_features:
        raise DimensionMismatchError(f"{name}: has {shape[1]} features, expected {n_features}")


def check_rows(X: np.ndarray, name: str, *, finite: bool = True, nonzero: bool = False,
               block_rows: int = BLOCK_ROWS, row_offset: int = 0) -> None:
    """One pass over X in blocks (never a full-size temporary): NonFiniteError naming the first
    row holding NaN or Inf, ZeroRowError naming the first all-zero row (row numbers count from
    ``row_offset``)."""
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        if finite:
            ok = np.isfinite(block).all(axis=1)
            if not ok.all():
                row = row_offset + start + int(np.argmin(ok))
                raise NonFiniteError(f"{name}: row {row} contains NaN or Inf")
        if nonzero:
            ok = block.any(axis=1)
            if not ok.all():
                row = row_offset + start + int(np.argmin(ok))
                raise ZeroRowError(f"{name}: row {row} is all zeros (an empty or failed "
                                   "embedding has no direction to align)")


def check_known_pairs(known_pairs, d_a: int, d_b: int, min_pairs: int):
    """(pairs_a, pairs_b) as two finite 2-D float arrays with d_a / d_b features and the same
    number of rows, at least ``min_pairs``; None passes through."""
    if known_pairs is None:
        return None
    if not isinstance(known_pairs, (tuple, list)):
        raise ParameterTypeError("known_pairs: expected a pair (pairs_a, pairs_b) of 2-D arrays, "
                                 f"got {type(known_pairs).__name__}")
    if len(known_pairs) != 2:
        raise ParameterTypeError("known_pairs: expected a pair (pairs_a, pairs_b) of 2-D arrays, "
                                 f"got a {type(known_pairs).__name__} of length {len(known_pairs)}")
    pairs_a = check_embeddings(known_pairs[0], "known_pairs[0]", n_features=d_a,
                               reject_zero_rows=True)
    pairs_b = check_embeddings(known_pairs[1], "known_pairs[1]", n_features=d_b,
                               reject_zero_rows=True)
    if pairs_a.shape[0] != pairs_b.shape[0]:
        raise ShapeError(f"known_pairs: {pairs_a.shape[0]} rows of A but {pairs_b.shape[0]} rows "
                         "of B; row i of each must be the same item")
    if pairs_a.shape[0] < min_pairs:
        raise TooFewRowsError(f"known_pairs: {pairs_a.shape[0]} pairs, at least {min_pairs} "
                              "are needed (50 or more are recommended)")
    return pairs_a, pairs_b


def check_output_path(path, what: str = "output") -> str:
    """Fail before any work if ``path`` cannot be written: its directory must exist and accept
    a new file (probed by creating and removing a temporary file), and ``path`` must not be a
    directory. Raises OutputPathError (an OSError)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputPathError(f"{what}: {path!r} is a directory, not a file")
    if not os.path.isdir(directory):
        raise OutputDirectoryNotFoundError(f"{what}: cannot write {path!r}: directory "
                                           f"{directory!r} does not "
                              "exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".minivec2vec-probe-", dir=directory)
    except OSError as exc:
        raise OutputPathError(f"{what}: cannot write {path!r}: directory {directory!r} is not "
                              f"writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def as_float32_block(X: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 view of X when possible, else a copy (only ever called on blocks)."""
    return np.ascontiguousarray(X, dtype=np.float32)


def parse_memory(limit) -> int | None:
    """Bytes from an int or a string like '2GB', '512 MiB'; None stays None."""
    if limit is None:
        return None
    if isinstance(limit, numbers.Integral) and not isinstance(limit, bool):
        value = int(limit)
    elif isinstance(limit, numbers.Real) and not isinstance(limit, bool):
        value = int(limit)
    elif isinstance(limit, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", limit)
        if not m or m.group(2).upper() not in _UNITS:
            raise InvalidParameterError(f"memory_limit: cannot parse {limit!r}; use bytes or e.g. '2GB', '512MiB'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise ParameterTypeError(f"memory_limit: expected bytes (int) or a string like '2GB', "
                                 f"got {type(limit).__name__}")
    if value <= 0:
        raise InvalidParameterError(f"memory_limit: must be positive, got {limit!r}")
    return value


def check_random_state(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int seed or an existing Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise ParameterTypeError(f"random_state: expected None, an int or a numpy Generator, "
                             f"got {type(random_state).__name__}")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterTypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise InvalidParameterError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)
