"""Input checks shared by every public entry point: one place that names the problem."""
from __future__ import annotations

import numbers
import re

import numpy as np

_FLOAT_KINDS = (np.float16, np.float32, np.float64)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def check_embeddings(X, name: str, *, min_rows: int = 1, n_features: int | None = None,
                     check_finite: bool = True) -> np.ndarray:
    """Return ``X`` as a 2-D floating array (no copy for float16/32/64 arrays).

    Raises TypeError for non-float dtypes and ValueError for a wrong shape, too few rows,
    a feature count different from ``n_features``, or NaN/Inf values.
    """
    if not isinstance(X, np.ndarray):
        if hasattr(X, "__array__") or isinstance(X, (list, tuple)):
            X = np.asarray(X)
        else:
            raise TypeError(f"{name}: expected a 2-D numpy array, got {type(X).__name__}")
    if X.dtype.type not in _FLOAT_KINDS:
        raise TypeError(f"{name}: expected a float16, float32 or float64 array, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_rows, n_features), got {X.ndim}-D "
                         f"with shape {X.shape}")
    if X.shape[1] == 0:
        raise ValueError(f"{name}: has 0 features")
    if X.shape[0] < min_rows:
        raise ValueError(f"{name}: has {X.shape[0]} rows, at least {min_rows} are needed")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name}: has {X.shape[1]} features, expected {n_features}")
    if check_finite:
        check_finite_rows(X, name)
    return X


def check_finite_rows(X: np.ndarray, name: str, block_rows: int = 65536,
                      row_offset: int = 0) -> None:
    """Raise ValueError naming the first row holding NaN or Inf (checked block by block);
    ``row_offset`` is the index of X's first row in the caller's numbering."""
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = row_offset + start + int(np.argmin(finite))
            raise ValueError(f"{name}: row {row} contains NaN or Inf")


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
            raise ValueError(f"memory_limit: cannot parse {limit!r}; use bytes or e.g. '2GB', '512MiB'")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise TypeError(f"memory_limit: expected bytes (int) or a string like '2GB', got "
                        f"{type(limit).__name__}")
    if value <= 0:
        raise ValueError(f"memory_limit: must be positive, got {limit!r}")
    return value


def check_random_state(random_state) -> np.random.Generator:
    """A numpy Generator from None, an int seed or an existing Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise TypeError(f"random_state: expected None, an int or a numpy Generator, got "
                    f"{type(random_state).__name__}")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)
