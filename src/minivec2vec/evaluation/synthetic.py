"""Synthetic pairs with a known map, written to disk as ``.npy`` shards (tests and benchmarks).

Both sides draw DIFFERENT rows (no row exists on both sides) from the same latent distribution:
a mixture of ``n_clusters`` Gaussian clusters with unequal weights, in which dimension j has
scale (1 + j)^-1/2 (anisotropic: a rotation of it is not the same distribution, so the map is
identifiable). Side A stores ``z + mean_a``; side B stores ``z @ R + noise + mean_b`` with R a
random (Haar) orthogonal matrix, the ground truth, saved as ``true_map.npy``. ``n_test`` paired
rows (the same z on both sides) are saved as ``test_a.npy`` / ``test_b.npy`` for evaluation.

Rows are generated in chunks of :data:`CHUNK_ROWS`, each from its own seed (seed, side, chunk),
so the data do not depend on the shard size and memory stays bounded by one chunk whatever n is.
Layout: ``<directory>/a/part-00000.npy ...``, ``<directory>/b/...``, ``true_map.npy``,
``test_a.npy``, ``test_b.npy``, ``meta.json``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..exceptions import InvalidParameterError
from .._runtime.blocks import SUM_ROWS

CHUNK_ROWS = SUM_ROWS   # rows per seeded chunk; the generated rows depend on it
_SIDE_A, _SIDE_B, _TEST = 0, 1, 2


def _world(n_features, n_clusters, seed):
    rng = np.random.default_rng([seed, 99])
    scale = (1.0 + np.arange(n_features)) ** -0.5
    scale /= np.sqrt((scale ** 2).sum())          # rows of unit expected squared norm
    centres = rng.standard_normal((n_clusters, n_features)) * scale * 1.5
    weights = rng.dirichlet(np.full(n_clusters, 2.0))
    Q, Rq = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    rotation = Q * np.sign(np.diag(Rq))            # Haar-distributed orthogonal matrix
    mean_a = rng.standard_normal(n_features) * scale * 2.0
    mean_b = rng.standard_normal(n_features) / np.sqrt(n_features) * 2.0
    return scale, centres, weights, rotation, mean_a, mean_b


def _latent(rng, n, scale, centres, weights, within):
    labels = rng.choice(centres.shape[0], size=n, p=weights)
    return centres[labels] + rng.standard_normal((n, scale.shape[0])) * scale * within


def _side_rows(z, side, world, noise, rng):
    scale, _, _, rotation, mean_a, mean_b = world
    if side == "a":
        return z + mean_a
    eps = rng.standard_normal(z.shape) * (noise / np.sqrt(z.shape[1]))
    return z @ rotation + eps + mean_b


def _write_npy(path, chunks, n_rows, n_features, dtype):
    """Write the rows yielded by ``chunks`` as one .npy file, atomically (tmp + rename)."""
    from ..io.etl import _npy_header_bytes
    tmp = path + ".tmp"
    written = 0
    with open(tmp, "wb") as fh:
        fh.write(_npy_header_bytes((n_rows, n_features), dtype))
        for rows in chunks:
            fh.write(np.ascontiguousarray(rows, dtype=dtype).tobytes())
            written += rows.shape[0]
    if written != n_rows:
        os.unlink(tmp)
        raise RuntimeError(f"internal error: wrote {written} rows of {n_rows} to {path}")
    os.replace(tmp, path)


def generate_pair(directory, n_rows, n_features, *, n_rows_b=None, n_clusters=64, within=0.6,
                  noise=0.05, shard_rows=100_000, n_test=1000, dtype="float32", seed=0):
    """Write a synthetic unpaired pair with a known orthogonal map to ``directory``.

    Parameters
    ----------
    directory : created if missing; must not already hold generated shards
    n_rows, n_rows_b : rows of side A and of side B (default: n_rows)
    n_features : dimension of both sides
    n_clusters, within : latent mixture components, and their spread relative to the spread
        of the cluster centres
    noise : standard deviation of B's isotropic noise relative to the rows' norm (about 1)
    shard_rows : rows per ``.npy`` shard
    n_test : paired held-out rows written to test_a.npy / test_b.npy
    dtype : "float32" or "float16"
    seed : everything is determined by it

    Returns a dict of the written paths: ``a``, ``b`` (shard directories), ``true_map``,
    ``test_a``, ``test_b``, ``meta``.
    """
    from .._runtime.validation import check_positive_int
    n_rows = check_positive_int(n_rows, "n_rows")
    n_rows_b = n_rows if n_rows_b is None else check_positive_int(n_rows_b, "n_rows_b")
    n_features = check_positive_int(n_features, "n_features", minimum=2)
    n_clusters = check_positive_int(n_clusters, "n_clusters")
    shard_rows = check_positive_int(shard_rows, "shard_rows")
    n_test = check_positive_int(n_test, "n_test", minimum=0)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise InvalidParameterError(f"dtype: expected float16 or float32, got {dtype}")
    directory = os.fspath(directory)
    paths = {"a": os.path.join(directory, "a"), "b": os.path.join(directory, "b"),
             "true_map": os.path.join(directory, "true_map.npy"),
             "test_a": os.path.join(directory, "test_a.npy"),
             "test_b": os.path.join(directory, "test_b.npy"),
             "meta": os.path.join(directory, "meta.json")}
    for side in ("a", "b"):
        os.makedirs(paths[side], exist_ok=True)
        if any(name.endswith(".npy") for name in os.listdir(paths[side])):
            raise FileExistsError(f"directory {paths[side]!r} already holds .npy shards")
    world = _world(n_features, n_clusters, seed)
    scale, centres, weights = world[0], world[1], world[2]

    def chunks(side, side_id, first, last):
        """Rows [first, last) of a side, from the fixed chunks of CHUNK_ROWS rows."""
        for c in range(first // CHUNK_ROWS, -(-last // CHUNK_ROWS)):
            rng = np.random.default_rng([seed, side_id, c])
            z = _latent(rng, CHUNK_ROWS, scale, centres, weights, within)
            rows = _side_rows(z, side, world, noise, rng)
            lo = max(first, c * CHUNK_ROWS) - c * CHUNK_ROWS
            hi = min(last, (c + 1) * CHUNK_ROWS) - c * CHUNK_ROWS
            yield rows[lo:hi]

    for side, side_id, n in (("a", _SIDE_A, n_rows), ("b", _SIDE_B, n_rows_b)):
        for s, first in enumerate(range(0, n, shard_rows)):
            last = min(first + shard_rows, n)
            _write_npy(os.path.join(paths[side], f"part-{s:05d}.npy"),
                       chunks(side, side_id, first, last), last - first, n_features, dtype)
    rng = np.random.default_rng([seed, _TEST])
    z = _latent(rng, n_test, scale, centres, weights, within)
    _write_npy(paths["test_a"], [_side_rows(z, "a", world, noise, rng)], n_test, n_features, dtype)
    _write_npy(paths["test_b"], [_side_rows(z, "b", world, noise, rng)], n_test, n_features, dtype)
    _write_npy(paths["true_map"], [world[3]], n_features, n_features, np.float64)
    meta = {"format": "minivec2vec-synthetic-pair", "rows_a": n_rows, "rows_b": n_rows_b,
            "n_features": n_features, "n_clusters": n_clusters, "within": within,
            "noise": noise, "shard_rows": shard_rows, "n_test": n_test, "dtype": str(dtype),
            "seed": seed,
            "truth": "x_b = z @ true_map + noise + mean_b for x_a = z + mean_a; after each side "
                     "is centred, the map A -> B is true_map"}
    with open(paths["meta"], "w") as fh:
        json.dump(meta, fh, indent=1)
    return paths
