"""Concurrency: transform, knn and kmeans called from 8 Python threads at once give the results
of single-threaded calls, whatever the Numba threading layer (see _runtime/threads.py for the choice);
the workqueue layer is serialised instead of aborting; a forked child gets a clear error
instead of being killed by GNU OpenMP."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ortho_group

import minivec2vec
from minivec2vec import MiniVec2Vec, kmeans, knn
from minivec2vec._runtime.threads import threading_layer
from minivec2vec.kernels.kmeans import _SMALL_WORK
from minivec2vec.kernels.knn import ENGINE

N_THREADS = 8
# children import the same minivec2vec as this process (installed, or the source tree with its
# built extension), never the bare source tree of the checkout
SRC = str(Path(minivec2vec.__file__).resolve().parents[1])


def run_together(function, n_threads=N_THREADS):
    """Call function(i) from n_threads threads released at the same instant; return results
    in thread order and re-raise the first error."""
    barrier = threading.Barrier(n_threads)
    results, errors = [None] * n_threads, []

    def work(i):
        try:
            barrier.wait()
            results[i] = function(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def fitted_by_hand():
    rng = np.random.default_rng(3)
    model = MiniVec2Vec()
    model.W_ = ortho_group.rvs(48, random_state=3)
    model.mean_a_ = rng.standard_normal(48)
    model.mean_b_ = rng.standard_normal(48)
    model.scale_b_ = 2.0
    model.n_features_a_ = model.n_features_b_ = 48
    return model


def _layer_loads(name):
    try:
        __import__(f"numba.np.ufunc.{name}pool")
        return True
    except Exception:  # noqa: BLE001 - a layer that cannot load, for whatever reason
        return False


def test_layer_is_one_that_accepts_concurrent_calls():
    """The package picks the first layer of tbb, omp that loads (both accept concurrent
    launches); workqueue, which aborts on them, only when neither does."""
    if os.environ.get("NUMBA_THREADING_LAYER"):
        pytest.skip("NUMBA_THREADING_LAYER is set: the user's choice is respected")
    expected = next((name for name in ("tbb", "omp") if _layer_loads(name)), "workqueue")
    assert threading_layer() == expected


def test_transform_from_8_threads(fitted_by_hand):
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3000 + 100 * i, 48)).astype(np.float32) for i in range(N_THREADS)]
    expected = [fitted_by_hand.transform(X, add_mean=bool(i % 2)) for i, X in enumerate(inputs)]
    got = run_together(lambda i: fitted_by_hand.transform(inputs[i], add_mean=bool(i % 2)))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(g, e)


def test_apply_map_from_8_threads(fitted_by_hand, tmp_path):
    """Eight streams written at once, each in small chunks, equal their lone runs byte for byte."""
    from minivec2vec.io.etl import apply_map
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((2000 + 50 * i, 48)).astype(np.float32) for i in range(N_THREADS)]
    for i, X in enumerate(inputs):
        apply_map(fitted_by_hand, X, tmp_path / f"lone{i}.npy", chunk_rows=256, progress=False)
    run_together(lambda i: apply_map(fitted_by_hand, inputs[i], tmp_path / f"together{i}.npy",
                                     chunk_rows=256, progress=False))
    for i in range(N_THREADS):
        assert ((tmp_path / f"together{i}.npy").read_bytes()
                == (tmp_path / f"lone{i}.npy").read_bytes())


CONCURRENT_FITS = """
    import os, threading, warnings, numpy as np
    from scipy.stats import ortho_group
    from minivec2vec import MiniVec2Vec
    import minivec2vec.kernels.knn
    minivec2vec.kernels.knn.ENGINE = ENGINE = os.environ["ENGINE"]   # the engine every kNN of the fit uses
    rng = np.random.default_rng(5)
    X_a = rng.standard_normal((1200, 24)).astype(np.float32) * np.linspace(3, 1, 24, dtype=np.float32)
    X_b = X_a[rng.permutation(1200)] @ ortho_group.rvs(24, random_state=5).astype(np.float32)
    params = dict(n_runs=3, n_clusters=4, refine_iter=10, transport_iter=20, mutual_iter=2,
                  refine_clusters=0, n_restarts=1, extra_restarts=0, random_state=7)
    warnings.simplefilter("ignore")
    fit = lambda n_threads: MiniVec2Vec(n_threads=n_threads, **params).fit(X_a, X_b).W_
    lone, lone2 = fit(1), fit(2)
    barrier = threading.Barrier(4); out = [None] * 4
    def work(i):
        barrier.wait()
        out[i] = fit(1 + i % 2)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]; [t.join() for t in threads]
    exact = all(np.array_equal(W, lone) for W in out)
    close = all(np.allclose(W, lone, atol=1e-4) for W in out)
    print(ENGINE, np.array_equal(lone2, lone), np.allclose(lone.T @ lone, np.eye(24), atol=1e-8),
          exact, close)
"""


@pytest.mark.parametrize("engine", ["blas"] + (["int8"] if ENGINE == "int8" else []))
def test_fit_from_4_threads(engine):
    """Four fits at once, n_threads 1 and 2 mixed, give the map of a lone fit bit for bit, on
    either kNN engine. The lone map is the same with 2 threads, bit for bit, and orthogonal.
    In a child process: the fits must not leave BLAS state behind in the process that runs
    the other tests."""
    result = _python(CONCURRENT_FITS, {"ENGINE": engine})
    assert result.returncode == 0, result.stderr[-2000:]
    engine_used, same_threads, orthogonal, exact, close = result.stdout.split()
    assert engine_used == engine
    assert (same_threads, orthogonal, exact) == ("True", "True", "True"), result.stdout


OVERLAPPING_REGIONS = """
    import threading
    from threadpoolctl import ThreadpoolController
    from minivec2vec._runtime.threads import parallel_region, single_threaded_blas
    def blas_threads():
        return sorted({i["num_threads"] for i in ThreadpoolController().info()
                       if i["user_api"] == "blas"})
    before = blas_threads()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}
    def first():
        with parallel_region(1):
            first_in.set()
            second_in.wait(60)
        first_out.set()
    def second():
        first_in.wait(60)
        with single_threaded_blas():
            second_in.set()
            first_out.wait(60)
            seen["inside"] = blas_threads()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    [t.start() for t in threads]; [t.join() for t in threads]
    print(before, seen["inside"], blas_threads())
"""


def test_blas_stays_single_threaded_while_any_region_runs():
    """OpenBLAS's results depend on its process-wide thread count: a call that leaves its
    region must not give BLAS its threads back while another thread's region still runs. In a
    child process, so that no
    region of another test (or a generator holding one open until it is collected) can be
    running beside it."""
    result = _python(OVERLAPPING_REGIONS, {"OPENBLAS_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    before, inside, after = result.stdout.strip().split("] ")
    assert before == "[2" and inside == "[1"
    # and the last region to leave gives BLAS back the count found before (OpenBLAS sometimes
    # ignores that call from the leaving thread: _runtime.threads._restore_blas_threads)
    assert after == "[2]", result.stdout


FORK_DURING_A_REGION = """
    import os, threading
    from threadpoolctl import ThreadpoolController
    from minivec2vec._runtime.threads import single_threaded_blas
    def blas_threads():
        return sorted({i["num_threads"] for i in ThreadpoolController().info()
                       if i["user_api"] == "blas"})
    entered, leave = threading.Event(), threading.Event()
    def hold():
        with single_threaded_blas():
            entered.set()
            leave.wait(60)
    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(60)
    parent_inside = blas_threads()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                      # the child: no region runs here
        os.close(read)
        start = blas_threads()
        with single_threaded_blas():  # a fresh lock: entering does not deadlock
            inside = blas_threads()
        os.write(write, repr((start, inside, blas_threads())).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 1000).decode()
    os.waitpid(pid, 0)
    leave.set(); holder.join()
    print(parent_inside, child, blas_threads())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_a_region_gets_blas_threads_back():
    """A child forked while another thread of its parent holds BLAS at one thread starts with
    the parent's original count and a lock of its own."""
    result = _python(FORK_DURING_A_REGION, {"OPENBLAS_NUM_THREADS": "2"}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["[1]", "([2],", "[1],", "[2])", "[2]"], result.stdout


@pytest.mark.parametrize("engine", ["blas"] + (["int8"] if ENGINE == "int8" else []))
@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_knn_from_8_threads(metric, engine):
    """Eight calls at once, n_threads 1 and 2 mixed, give the lone 1-thread call's result bit
    for bit, on both engines (the BLAS engine's GEMMs at one BLAS thread however the calls
    overlap). Run it with OPENBLAS_CORETYPE=Haswell on an AVX-512 machine to get the AVX2
    kernels, whose rounding changes with the thread count."""
    rng = np.random.default_rng(1)
    database = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = [rng.standard_normal((600, 64)).astype(np.float32) for _ in range(N_THREADS)]
    expected = [knn(q, database, 10, metric=metric, n_threads=1, engine=engine)
                for q in queries]
    got = run_together(lambda i: knn(queries[i], database, 10, metric=metric,
                                     n_threads=1 + i % 2, engine=engine))
    for (es, ei), (gs, gi) in zip(expected, got):
        np.testing.assert_array_equal(gi, ei)
        np.testing.assert_array_equal(gs, es)
    # and against brute force, so that "equal" cannot mean "equally wrong"
    if metric == "ip":
        np.testing.assert_array_equal(got[0][1][:, 0],
                                      np.argmax(queries[0] @ database.T, axis=1))


def test_kmeans_numba_kernels_from_8_threads():
    """k-means runs the Numba parallel kernels: concurrent launches must be safe."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((40000, 48)).astype(np.float32)
    # large enough that n_threads=2 really runs the parallel kernels (smaller work runs one)
    assert X.shape[0] * 32 * X.shape[1] >= _SMALL_WORK
    expected = kmeans(X, 32, random_state=5, n_threads=2)
    got = run_together(lambda i: kmeans(X, 32, random_state=5, n_threads=2))
    for centroids, labels, inertia in got:
        np.testing.assert_array_equal(centroids, expected[0])
        np.testing.assert_array_equal(labels, expected[1])
        assert inertia == expected[2]


def _python(code, env_extra=None, timeout=240):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout)


CONCURRENT_KMEANS = """
    import threading, numpy as np
    from minivec2vec import kmeans
    from minivec2vec._runtime.threads import threading_layer
    # 40,000 x 32 x 48 multiply-adds per pass: above kmeans' one-thread cut-off (_SMALL_WORK),
    # so the parallel kernels really launch side by side
    X = np.random.default_rng(0).standard_normal((40000, 48)).astype(np.float32)
    ref = kmeans(X, 32, random_state=1, n_threads=2)[0]
    barrier = threading.Barrier(8); out = [None] * 8
    def work(i):
        barrier.wait()
        out[i] = kmeans(X, 32, random_state=1, n_threads=2)[0]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    [t.start() for t in threads]; [t.join() for t in threads]
    print(threading_layer(), all(np.array_equal(o, ref) for o in out))
"""


@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_concurrent_kernels_under_each_layer(layer):
    """Bare Numba aborts the process under workqueue on concurrent launches ("Concurrent
    access has been detected"); minivec2vec serialises them instead."""
    result = _python(CONCURRENT_KMEANS, {"NUMBA_THREADING_LAYER": layer})
    if result.returncode != 0 and "No threading layer could be loaded" in result.stderr:
        pytest.skip(f"{layer} layer not available here")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [layer, "True"]


FORKED_CHILD = """
    import multiprocessing as mp, numpy as np
    from minivec2vec import kmeans, knn
    from minivec2vec._runtime.threads import threading_layer
    X = np.random.default_rng(0).standard_normal((3000, 32)).astype(np.float32)
    ref = kmeans(X, 12, random_state=1, n_threads=2)[0]
    ref_knn = knn(X[:100], X, 5)[1]
    def child(q):
        same_knn = bool(np.array_equal(knn(X[:100], X, 5)[1], ref_knn))
        try:
            q.put((same_knn, bool(np.array_equal(kmeans(X, 12, random_state=1)[0], ref))))
        except RuntimeError as exc:
            q.put((same_knn, str(exc)))
    ctx = mp.get_context("fork"); q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,)); p.start(); p.join(120)
    print(threading_layer(), p.exitcode, repr(q.get(timeout=5) if p.exitcode == 0 else None))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_result_or_a_clear_error():
    """With tbb the forked child computes; with GNU OpenMP it gets our RuntimeError (bare
    Numba would kill it with SIGTERM). The C++ kNN works in the child either way."""
    result = _python(FORKED_CHILD)
    assert result.returncode == 0, result.stderr[-2000:]
    layer, exitcode, payload = result.stdout.strip().split(" ", 2)
    assert exitcode == "0", result.stdout + result.stderr[-2000:]
    same_knn, outcome = eval(payload)  # a tuple printed by repr above
    assert same_knn is True
    if layer == "omp":
        assert "forked after Numba's GNU OpenMP" in outcome and "spawn" in outcome
    else:
        assert outcome is True


@pytest.mark.stress
def test_concurrency_cases_20_times():
    """Every concurrency case of this module, 20 rounds in fresh processes: a race that shows
    once in many runs shows here (``python -m pytest -m stress``; not in the default run)."""
    for round_ in range(20):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not stress",
             __file__], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"round {round_ + 1} of 20:\n{result.stdout[-3000:]}"
