"""Fixed datasets shared by the benchmark modules.

RULE: this module is only ever APPENDED to. Never change what an existing name returns (rows,
sizes, seeds, preprocessing): asv compares results across commits, and a benchmark whose data
changed is no longer the same benchmark. To benchmark something new, add a new name.

Two sources:

* the real sample shipped in the package (5000 rows, ``minivec2vec.evaluation.datasets.load_sample``):
  always available, used by every benchmark so the suite runs anywhere, CI included;
* ``<repo>/../shared/data`` (70000 rows per model), or the folder named by the environment
  variable ``MINIVEC2VEC_BENCH_DATA``: optional. Benchmarks parametrised on it raise
  ``NotImplementedError`` in ``setup`` when it is absent, which asv reports as skipped.
"""
from __future__ import annotations

import functools
import os
import pathlib

import numpy as np

from minivec2vec.evaluation import datasets

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = pathlib.Path(os.environ.get("MINIVEC2VEC_BENCH_DATA", REPO.parent / "shared" / "data"))
SEED = 0


def shared_available(model="minilm"):
    """True when the larger real data set holds ``<model>.npy``."""
    return (SHARED_DATA / f"{model}.npy").is_file()


def require_shared(model="minilm"):
    """Skip the calling benchmark (asv convention) when the larger data set is absent."""
    if not shared_available(model):
        raise NotImplementedError(f"{SHARED_DATA / (model + '.npy')} not found")


@functools.lru_cache(maxsize=None)
def _shared_rows(model, start, stop):
    require_shared(model)
    data = np.load(SHARED_DATA / f"{model}.npy", mmap_mode="r")
    if stop > data.shape[0]:
        raise NotImplementedError(f"{model}.npy has {data.shape[0]} rows, {stop} needed")
    out = np.asarray(data[start:stop], dtype=np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=None)
def _sample_rows(model):
    out = np.asarray(datasets.load_sample(model), dtype=np.float32)
    out.flags.writeable = False
    return out


def rows(model, source, start, stop):
    """Rows [start, stop) of ``model`` ('minilm' or 'wordllama') from 'sample' or 'shared',
    float32, read-only."""
    if source == "sample":
        data = _sample_rows(model)
        if stop > data.shape[0]:
            raise ValueError(f"the sample has {data.shape[0]} rows, {stop} requested")
        return data[start:stop]
    if source == "shared":
        return _shared_rows(model, start, stop)
    raise ValueError(f"unknown source {source!r}")


def centred_unit(X):
    """Rows centred on their column mean and L2-normalised (what fit() works on), float32."""
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32)


# ------------------------------------------------------------------------------------------
# kNN: (queries, database) of distinct rows of minilm (raw, unnormalised vectors)
# ------------------------------------------------------------------------------------------
KNN_DATASETS = ("sample-1k-4k", "shared-1k-60k")


def knn_data(name):
    """(queries, database) for a kNN benchmark; raises NotImplementedError if unavailable."""
    if name == "sample-1k-4k":
        return rows("minilm", "sample", 0, 1000), rows("minilm", "sample", 1000, 5000)
    if name == "shared-1k-60k":
        return rows("minilm", "shared", 0, 1000), rows("minilm", "shared", 10000, 70000)
    raise ValueError(f"unknown kNN dataset {name!r}")


# ------------------------------------------------------------------------------------------
# k-means: centred unit rows of minilm (as clustered inside fit)
# ------------------------------------------------------------------------------------------
KMEANS_DATASETS = ("sample-5k", "shared-60k")
# clusters per data set: 500 as in refine-2 on the large set, 100 (50 rows each) on the sample
KMEANS_CLUSTERS = {"sample-5k": 100, "shared-60k": 500}


@functools.lru_cache(maxsize=None)
def kmeans_data(name):
    """(n, 384) float32 rows to cluster; raises NotImplementedError if unavailable."""
    if name == "sample-5k":
        return centred_unit(rows("minilm", "sample", 0, 5000))
    if name == "shared-60k":
        return centred_unit(rows("minilm", "shared", 0, 60000))
    raise ValueError(f"unknown k-means dataset {name!r}")


# ------------------------------------------------------------------------------------------
# Procrustes: row-aligned (true) pairs minilm (384-d) -> wordllama (256-d), centred unit rows
# ------------------------------------------------------------------------------------------
PAIR_DATASETS = ("sample-5k", "shared-30k")


@functools.lru_cache(maxsize=None)
def pair_data(name):
    """(X, Y) row-aligned pairs, float32; raises NotImplementedError if unavailable."""
    if name == "sample-5k":
        source, n = "sample", 5000
    elif name == "shared-30k":
        source, n = "shared", 30000
    else:
        raise ValueError(f"unknown pair dataset {name!r}")
    return (centred_unit(rows("minilm", source, 0, n)),
            centred_unit(rows("wordllama", source, 0, n)))


def random_rows(X, n_rows, seed=SEED):
    """A fixed random choice of ``n_rows`` distinct rows of X (e.g. as starting centers)."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(X[np.sort(rng.choice(X.shape[0], n_rows, replace=False))])


def neighbour_indices(n_rows, n_database, k, seed=SEED):
    """(n_rows, k) int64 random neighbour lists into a database of ``n_database`` rows."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_database, size=(n_rows, k), dtype=np.int64)


# ------------------------------------------------------------------------------------------
# Whole fit: the protocol split of the sample (B rotated by a fixed random rotation)
# ------------------------------------------------------------------------------------------
FIT_ROTATION_SEED = 0

# light settings: every stage runs, a few seconds on 2 cores
LIGHT_FIT = dict(n_runs=3, n_clusters=20, anchor_sample=2000, qap_restarts=5, n_neighbors=20,
                 refine_iter=10, refine_sample=1000, refine_neighbors=20, refine_clusters=100,
                 random_state=SEED)
DEFAULT_FIT = dict(random_state=SEED)


def fit_split():
    """The protocol split of the sample: 2000 + 2000 training rows, 1000 paired test rows."""
    return datasets.sample_split("minilm", "wordllama", rotate_seed=FIT_ROTATION_SEED)


# ------------------------------------------------------------------------------------------
# refine-transport: 1,000 centred unit rows of minilm against 1,000 OTHER rows of minilm
# with their coordinates rotated (the small-input case the stage runs on)
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def transport_data():
    """(X_a, X_b, W_start): sample rows 0-999 and 1000-1999 (B rotated), and a random start."""
    from scipy.stats import special_ortho_group
    rotation = special_ortho_group.rvs(384, random_state=SEED).astype(np.float32)
    X_a = centred_unit(rows("minilm", "sample", 0, 1000))
    X_b = centred_unit(rows("minilm", "sample", 1000, 2000) @ rotation)
    W_start = special_ortho_group.rvs(384, random_state=SEED + 1)
    return X_a, X_b, W_start
