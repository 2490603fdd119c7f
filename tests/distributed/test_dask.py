"""fit / transform / knn / Procrustes on dask arrays, computed by a real distributed.LocalCluster
(2 worker processes on loopback, spawned: Numba's OpenMP layer refuses forked children).

Oracles: the in-memory fit with the same seed (W to 1e-4; measured bit-equal), the numpy
transform, exact brute-force kNN, and the in-memory Procrustes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
import dask  # noqa: E402

import minivec2vec  # noqa: E402
from minivec2vec import MiniVec2Vec, dask_knn, dask_procrustes, knn, procrustes  # noqa: E402
from knn_oracle import assert_matches_brute_force, brute_force, integer_data  # noqa: E402

# Light settings: these tests are about the Dask path giving the in-memory result, not quality.
# extra_restarts=0: these light fits are doubtful, and the five extra restarts each would
# otherwise run only repeat the same Dask path (test_confidence.py covers that logic).
LIGHT = dict(n_runs=4, refine_iter=10, refine_sample=300, refine_neighbors=20, n_neighbors=20,
             refine_clusters=50, mutual_iter=2, qap_restarts=10, transport_iter=5, n_threads=1,
             extra_restarts=0)


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, spawned, importing this checkout's package."""
    package_root = str(Path(minivec2vec.__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           env={"PYTHONPATH": python_path})
        with cluster, distributed.Client(cluster) as dask_client:
            yield dask_client


def _on_workers(client, *collections):
    """Compute the collections together on the cluster's workers."""
    return client.gather(client.compute(list(collections)))


@pytest.fixture(scope="module")
def fit_pair(rotation_split):
    """2000 + 2000 unpaired rows; fit_sample 1500 so the sampling draws are exercised."""
    return rotation_split.train_a, rotation_split.train_b


def test_cluster_has_two_spawned_worker_processes(client):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2
    pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    methods = client.run(lambda: __import__("multiprocessing").get_start_method(allow_none=True))
    assert set(methods.values()) <= {"spawn", None}


def test_fit_on_dask_gives_the_in_memory_map(client, fit_pair):
    X_a, X_b = fit_pair
    params = dict(LIGHT, random_state=11, fit_sample=1500)
    local = MiniVec2Vec(**params).fit(X_a, X_b)
    # uneven chunks, different on the two sides
    dask_a = da.from_array(X_a, chunks=((700, 300, 1000), (X_a.shape[1],)))
    dask_b = da.from_array(X_b, chunks=(450, 384))
    remote = MiniVec2Vec(**params).fit(dask_a, dask_b)
    assert np.abs(remote.W_ - local.W_).max() <= 1e-4
    np.testing.assert_allclose(remote.mean_a_, local.mean_a_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(remote.mean_b_, local.mean_b_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(remote.anchors_a_, local.anchors_a_, rtol=0, atol=1e-5)
    # a different seed gives a different map: the comparison above can fail
    other = MiniVec2Vec(**dict(params, random_state=12)).fit(dask_a, dask_b)
    assert np.abs(other.W_ - local.W_).max() > 1e-2


def test_fit_with_one_dask_side_and_no_sampling(client, fit_pair):
    X_a, X_b = fit_pair
    params = dict(LIGHT, random_state=5)          # fit_sample > rows: every row is used
    local = MiniVec2Vec(**params).fit(X_a, X_b)
    mixed = MiniVec2Vec(**params).fit(X_a, da.from_array(X_b, chunks=(600, 384)))
    assert np.abs(mixed.W_ - local.W_).max() <= 1e-4


def test_transform_of_dask_is_lazy_and_equals_numpy(client, fit_pair, rotation_split):
    X_a, X_b = fit_pair
    model = MiniVec2Vec(**LIGHT, random_state=3).fit(X_a, X_b)
    X = rotation_split.test_a
    lazy = model.transform(da.from_array(X, chunks=(128, 384)))
    lazy_raw = model.transform(da.from_array(X, chunks=(300, 384)), add_mean=True)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    assert lazy.shape == (X.shape[0], 256 + 128) and lazy.chunks[0][0] == 128
    mapped, mapped_raw = _on_workers(client, lazy, lazy_raw)
    np.testing.assert_allclose(mapped, model.transform(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(mapped_raw, model.transform(X, add_mean=True), rtol=0, atol=1e-5)
    # B -> A on Dask is the same map as in memory, both with and without the means
    Y = rotation_split.test_b
    lazy_inv = model.inverse_transform(da.from_array(Y, chunks=(200, 384)))
    lazy_inv_raw = model.inverse_transform(da.from_array(Y, chunks=(200, 384)), add_mean=True)
    assert isinstance(lazy_inv, da.Array) and lazy_inv.shape == Y.shape
    inv, inv_raw = _on_workers(client, lazy_inv, lazy_inv_raw)
    assert inv.tobytes() == model.inverse_transform(Y).tobytes()
    assert inv_raw.tobytes() == model.inverse_transform(Y, add_mean=True).tobytes()


def test_dask_input_errors_name_the_problem(client, fit_pair):
    X_a, X_b = fit_pair
    model = MiniVec2Vec(**LIGHT, random_state=0).fit(X_a, X_b)
    bad = np.array(X_a, dtype=np.float32)
    bad[1234, 7] = np.nan
    lazy = model.transform(da.from_array(bad, chunks=(500, 384)))   # building it reads nothing
    with pytest.raises(ValueError, match="row 1234 contains NaN"):
        lazy.compute()
    with pytest.raises(ValueError, match="X_a: row 1234 contains NaN"):
        MiniVec2Vec(**LIGHT).fit(da.from_array(bad, chunks=(500, 384)), X_b)
    with pytest.raises(TypeError, match="float16, float32 or float64"):
        MiniVec2Vec(**LIGHT).fit(da.zeros((100, 4), dtype=np.int32, chunks=50), X_b)
    with pytest.raises(ValueError, match="has 256 features, expected 384"):
        model.transform(da.zeros((10, 256), chunks=5))
    unknown = da.from_array(X_a, chunks=(500, 384))
    unknown = unknown[unknown[:, 0] > 0]
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        model.transform(unknown)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_dask_knn_equals_brute_force(client, rng, metric):
    Q = rng.standard_normal((300, 24)).astype(np.float32)
    D = rng.standard_normal((2500, 24)).astype(np.float32)
    k = 20
    # database blocks of 8 rows at the end: fewer rows than k
    db = da.from_array(D, chunks=((1000, 900, 592, 8), (24,)))
    scores, indices = dask_knn(da.from_array(Q, chunks=(128, 24)), db, k, metric=metric)
    assert scores.shape == indices.shape == (300, k)
    scores, indices = _on_workers(client, scores, indices)
    atol = 1e-5 if metric == "ip" else 2e-6
    assert_matches_brute_force(scores, indices, Q, D, k, metric, atol)
    ref_scores, ref_indices = knn(Q, D, k, metric=metric)
    np.testing.assert_array_equal(indices, ref_indices)


def test_dask_knn_exact_ties_on_integer_data(client, rng):
    Q = integer_data(rng, 100, 5)
    D = integer_data(rng, 3000, 5)
    scores, indices = dask_knn(da.from_array(Q, chunks=40), da.from_array(D, chunks=(333, 5)), 12)
    scores, indices = _on_workers(client, scores, indices)
    ref_scores, ref_indices, _ = brute_force(Q, D, 12, "ip")
    np.testing.assert_array_equal(indices, ref_indices)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))
    with pytest.raises(ValueError, match="larger than the database"):
        dask_knn(da.from_array(Q), da.from_array(D[:5]), 6)
    with pytest.raises(ValueError, match="metric"):
        dask_knn(da.from_array(Q), da.from_array(D), 6, metric="l2")


def test_dask_procrustes_equals_in_memory(client, rng):
    X = rng.standard_normal((3000, 16)) + 2.0
    R = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    Y = X @ R + 0.05 * rng.standard_normal((3000, 16)) - 1.0
    W = dask_procrustes(da.from_array(X, chunks=700), da.from_array(Y, chunks=700))
    Xc, Yc = X - X.mean(axis=0), Y - Y.mean(axis=0)
    np.testing.assert_allclose(W, procrustes(Xc.T @ Yc), rtol=0, atol=1e-10)
    assert np.abs(W - R).max() < 0.01
    Y[1717, 3] = np.inf
    with pytest.raises(ValueError, match="Y: row 1717 contains NaN or Inf"):
        dask_procrustes(da.from_array(X, chunks=700), da.from_array(Y, chunks=700))
