"""Shared fixtures for the minivec2vec test suite.

* ``rng``: a seeded numpy Generator (fresh per test, so tests do not depend on their order).
* ``minilm`` / ``wordllama``: the shipped real sample (5000 rows, float16), loaded once.
* ``rotation_split`` / ``cross_split``: protocol splits of the sample, built once per session.
* ``shared_data``: the real data directory ``../shared/data``; tests that need it are marked
  ``@pytest.mark.slow`` and are skipped when the directory is absent.
* ``shared_fit`` / ``fit_through_the_cache``: a fit that several tests (and the README's
  examples) ask for with the same settings and data runs once per session.
"""
from __future__ import annotations

import copy
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from minivec2vec import MiniVec2Vec
from minivec2vec.evaluation.datasets import load_sample, sample_split

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Skip every ``slow`` test when ../shared/data is absent."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data directory {SHARED_DATA} is absent")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data directory {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm():
    X = load_sample("minilm")
    X.setflags(write=False)
    return X


@pytest.fixture(scope="session")
def wordllama():
    X = load_sample("wordllama")
    X.setflags(write=False)
    return X


def _read_only(split):
    """Shared between tests: read-only, so that no test can alter another's data."""
    for name in ("train_a", "train_b", "test_a", "test_b", "paired_train_b"):
        getattr(split, name).setflags(write=False)
    return split


@pytest.fixture(scope="session")
def rotation_split():
    """minilm against a randomly rotated copy of minilm (disjoint training halves)."""
    return _read_only(sample_split("minilm", "minilm", rotate_seed=0))


@pytest.fixture(scope="session")
def rotation_map(tmp_path_factory, rotation_split):
    """A saved map that works (minilm -> rotated minilm, top-1 1.000), for the store tests."""
    from minivec2vec import MiniVec2Vec
    path = tmp_path_factory.mktemp("stores") / "m.map"
    s = rotation_split
    # known pairs make this fit fast; the map is a near-exact rotation either way
    MiniVec2Vec(random_state=0, n_threads=1).fit(
        s.train_a, s.train_b, known_pairs=(s.train_a[:200], s.paired_train_b[:200])).save(path)
    return path


@pytest.fixture(scope="session")
def sample_test_files(tmp_path_factory, rotation_split):
    """The rotation split's test rows as ``a.npy`` and ``b.npy`` in a directory of their own."""
    d = tmp_path_factory.mktemp("sample_test_files")
    np.save(d / "a.npy", rotation_split.test_a)
    np.save(d / "b.npy", rotation_split.test_b)
    return d


@pytest.fixture(scope="session")
def cross_split():
    """minilm (384-d) against wordllama (256-d), wordllama's coordinates rotated."""
    return _read_only(sample_split("minilm", "wordllama", rotate_seed=0))


def random_unit_rows(rng, n, d):
    """n Gaussian rows of dimension d scaled to unit norm, float32."""
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def assert_semi_orthogonal(W, atol=1e-10):
    """W^T W = I when W is tall or square, W W^T = I when it is wide."""
    W = np.asarray(W, dtype=np.float64)
    G = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T
    np.testing.assert_allclose(G, np.eye(G.shape[0]), rtol=0, atol=atol)


def noisy_rotation_start(split, n_rows, sigma, seed=0):
    """The refinement oracles' setting: the first ``n_rows`` training rows of ``split`` centred
    and normalised, the supervised map fitted on their true partners plus Gaussian noise of
    ``sigma / sqrt(d)`` per entry (re-projected), and top-1 on the split's test pool.

    Returns (A, B, W_start, top1) with ``top1(W)`` the pool's top-1 of a map.
    """
    from minivec2vec.evaluation.metrics import evaluate
    from minivec2vec.kernels.rows import centre_normalise, column_mean
    from minivec2vec.kernels.procrustes import procrustes
    mean_a = column_mean(split.train_a[:n_rows])
    mean_b = column_mean(split.train_b[:n_rows])
    A = centre_normalise(split.train_a[:n_rows], mean_a, "a")
    B = centre_normalise(split.train_b[:n_rows], mean_b, "b")
    partners = centre_normalise(split.paired_train_b[:n_rows], mean_b, "b")
    W_true = procrustes(A.T.astype(np.float64) @ partners.astype(np.float64))
    W_start = procrustes(W_true + sigma / np.sqrt(W_true.shape[0])
                         * np.random.default_rng(seed).standard_normal(W_true.shape))
    test_a = centre_normalise(split.test_a, mean_a, "a")
    test_b = centre_normalise(split.test_b, mean_b, "b")

    def top1(W):
        return evaluate(test_a @ W.astype(np.float32), test_b, n_threads=1)["top1"]

    return A, B, W_start, top1


# ------------------------------------------------------------------------------------ shared fits
# The default-settings fit of minilm against rotated minilm is asked for by test_model.py's
# quality tests and by both of the README's examples (tests/test_readme_examples.py), the e5
# fit from 100 known pairs by test_known_pairs.py and the quickstart: each is one fit of
# 25-60 s, computed once here and handed out as copies. The thread count is not part of the
# key: a fit's result does not depend on it, bit for bit (test_model.py::test_fit_thread_invariant,
# test_properties.py::test_same_seed_same_w and the kernels' thread-invariance tests check that).
_FIT_CACHE = {}
_NOT_IN_KEY = ("n_threads",)
_PLAIN_FIT = MiniVec2Vec.fit      # fit_through_the_cache replaces MiniVec2Vec.fit for a test


def _digest(X):
    X = np.asarray(X)
    h = hashlib.sha256(f"{X.dtype.str}{X.shape}".encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


def shared_fit(X_a, X_b, known_pairs=None, **params):
    """``MiniVec2Vec(**params).fit(X_a, X_b, known_pairs=known_pairs)`` on in-memory arrays,
    computed once per session for the same settings and the same bytes. Returns a fitted copy
    of its own; the warnings the fit gave are given again on every call, so that a caller that
    turns AlignmentWarning into an error, or records it, sees what a fresh fit would show."""
    model = MiniVec2Vec(**params)
    key_params = {k: v for k, v in model.get_params().items() if k not in _NOT_IN_KEY}
    if not all(isinstance(v, (int, float, str, bool, type(None))) for v in key_params.values()):
        raise TypeError("shared_fit: only plain parameters (no Generator random_state)")
    pairs = () if known_pairs is None else tuple(_digest(P) for P in known_pairs)
    key = (tuple(sorted(key_params.items())), _digest(X_a), _digest(X_b), pairs)
    if key not in _FIT_CACHE:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = _PLAIN_FIT(model, X_a, X_b, known_pairs=known_pairs)
        _FIT_CACHE[key] = (fitted, [(w.message, w.category) for w in caught])
    fitted, given = _FIT_CACHE[key]
    for message, category in given:
        warnings.warn(message, category, stacklevel=2)
    result = copy.deepcopy(fitted)
    result.set_params(**{k: v for k, v in params.items() if k in _NOT_IN_KEY})
    return result


@pytest.fixture
def fit_through_the_cache(monkeypatch):
    """``MiniVec2Vec.fit`` on in-memory arrays goes through :func:`shared_fit` (for code that
    must run as written, such as the README's examples); fits on paths or Dask arrays do not."""
    def fit(self, X_a, X_b, known_pairs=None):
        if not all(isinstance(X, np.ndarray) for X in (X_a, X_b)):
            return _PLAIN_FIT(self, X_a, X_b, known_pairs=known_pairs)
        fitted = shared_fit(X_a, X_b, known_pairs=known_pairs, **self.get_params())
        self.__dict__.update(fitted.__dict__)
        return self

    monkeypatch.setattr(MiniVec2Vec, "fit", fit)
