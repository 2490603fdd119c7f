#!/usr/bin/env python
"""Side-by-side timings of minivec2vec and its usual peers, on the same data, in one run.

    python benchmarks/compare.py --quick                 # small sizes, < 1 min: checks the script
    python benchmarks/compare.py --cases knn,kmeans,procrustes
    python benchmarks/compare.py --cases fit             # default fit vs a dense baseline (slow)

Cases (real vectors from <repo>/../shared/data, float16 -> float32; the 5000-row sample shipped
in the package when that folder is absent, with reduced sizes, which is printed):

* knn: 10,000 queries x 60,000 database x 384, k = 50. minivec2vec.knn (the default engine and
  every other engine this CPU runs) against faiss IndexFlatIP, and against the GEMM alone
  (numpy Q @ D.T in blocks of 1024 queries, no selection: the physical bound of a float32
  exact search). To time an AVX2-only machine on a newer CPU, run with OPENBLAS_CORETYPE=Haswell
  FAISS_SIMD_LEVEL=AVX2 MINIVEC2VEC_KNN_ENGINE=int8-avx2 (this faiss build reads
  FAISS_SIMD_LEVEL; FAISS_OPT_LEVEL only picks a separately built wrapper, if any).
* kmeans: 60,000 x 384, 500 clusters. minivec2vec.kmeans against scikit-learn's
  MiniBatchKMeans with the same batch size, number of steps and k-means++ sample, and against
  scikit-learn's KMeans (Lloyd, n_init=1).
* procrustes: 30,000 row-aligned pairs x 384. The streamed cross-covariance + procrustes
  against scipy.linalg.orthogonal_procrustes.
* fit: a default MiniVec2Vec fit on 30,000 + 30,000 rows split per the protocol, against a
  "dense notebook formulation" of the same stages (full similarity matrices, argpartition,
  scikit-learn KMeans, scipy quadratic_assignment, scipy orthogonal_procrustes, full CSLS
  matrices for refine-mutual); the paper's four stages are also compared alone (ours with
  mutual_iter=0 against the sum of the dense pipeline's first four stage times). Each fit
  runs in its own process to measure its peak RSS.

Every implementation gets the same thread count (--threads): our n_threads, BLAS and OpenMP
pools through threadpoolctl, faiss.omp_set_num_threads. Times are the best of --repeat runs
(median also shown); ratio = peer time / our time, so > 1 means minivec2vec is faster.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
SEED = 0


# ------------------------------------------------------------------------------------------
# command line, environment, data
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="knn,kmeans,procrustes,fit",
                        help="comma-separated subset of knn,kmeans,procrustes,fit (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and light fit settings (< 1 min): checks the script")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per implementation, best kept (default 3, quick 1)")
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="folder holding minilm.npy, wordllama.npy, minilm-static.npy")
    parser.add_argument("--no-dense", action="store_true",
                        help="fit case: skip the (slow) dense baseline")
    parser.add_argument("--fit-worker", choices=["ours", "ours-paper", "dense"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - {"knn", "kmeans", "procrustes", "fit"}
    if unknown:
        parser.error(f"unknown cases: {sorted(unknown)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def limit_threads(n_threads):
    """Every BLAS / OpenMP pool loaded so far (numpy, scipy, scikit-learn, faiss) to n_threads."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=n_threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(n_threads)


def print_environment(args):
    import numba
    import scipy
    import sklearn
    import threadpoolctl
    from threadpoolctl import threadpool_info

    import minivec2vec
    try:
        import faiss
        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--", "src", "csrc") else ""
    print("=" * 100)
    print(f"minivec2vec {minivec2vec.__version__} (commit {commit}{dirty}), python "
          f"{platform.python_version()}, {platform.system()} {platform.machine()}")
    print(f"CPU: {cpu}, {os.cpu_count()} logical CPUs, threads used: {args.threads}")
    knn_module = __import__("importlib").import_module("minivec2vec.knn")
    forced = os.environ.get(knn_module.ENGINE_VARIABLE)
    print(f"CPU SIMD flags: {' '.join(_simd_flags()) or '?'}; kNN engines this CPU runs: "
          f"{', '.join(knn_module.available_engines())}; default {knn_module.ENGINE!r}"
          + (f" (forced by {knn_module.ENGINE_VARIABLE}={forced})" if forced else ""))
    # run one tiny parallel kernel so that Numba reports the threading layer it really uses
    minivec2vec.kmeans(np.eye(8, dtype=np.float32), 2, random_state=SEED, n_threads=args.threads)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, "
          f"scikit-learn {sklearn.__version__}, faiss {faiss_version}, numba {numba.__version__} "
          f"(threading layer {numba.threading_layer()}), threadpoolctl {threadpoolctl.__version__}")
    print("BLAS / OpenMP pools (threadpoolctl.threadpool_info()):")
    for pool in threadpool_info():
        print(f"  {pool.get('user_api', '?'):7s} {pool.get('internal_api', '?'):9s} "
              f"v{pool.get('version')}  threads={pool.get('num_threads')}  "
              f"layer={pool.get('threading_layer', '-')}  arch={pool.get('architecture', '-')}  "
              f"{os.path.basename(pool.get('filepath', ''))}")
    print(f"load average at start (1, 5, 15 min): {_loadavg()}  "
          "(other processes share these CPUs: compare ratios, not absolute times)")
    print("=" * 100)


def _git(*cmd):
    try:
        return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _loadavg():
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


class Data:
    """Row-aligned real embeddings: the shared data set, else the sample in the package."""

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)
        self.shared = all((self.folder / f"{m}.npy").is_file() for m in ("minilm", "wordllama"))

    def rows(self, model, start, stop):
        """float32 rows [start, stop) of ``model``; clipped to what exists."""
        if self.shared and (self.folder / f"{model}.npy").is_file():
            data = np.load(self.folder / f"{model}.npy", mmap_mode="r")
        else:
            from minivec2vec.evaluation import datasets
            data = datasets.load_sample(model)
        return np.asarray(data[start:stop], dtype=np.float32)

    def n_rows(self, model="minilm"):
        if self.shared:
            return np.load(self.folder / f"{model}.npy", mmap_mode="r").shape[0]
        return 5000

    def has(self, model):
        return self.shared and (self.folder / f"{model}.npy").is_file()

    def describe(self):
        if self.shared:
            return f"{self.folder} ({self.n_rows()} rows per model)"
        return ("FALLBACK: the 5000-row sample shipped in minivec2vec "
                f"({self.folder / 'minilm.npy'} not found), sizes reduced")


def centred_unit(X):
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return np.ascontiguousarray(X, dtype=np.float32)


# ------------------------------------------------------------------------------------------
# timing and tables
# ------------------------------------------------------------------------------------------
def timed(fn, repeat):
    """(last result, list of wall times) of ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


class Table:
    """Rows of (implementation, times, notes); the first row is ours, ratios against it."""

    def __init__(self, title):
        self.title = title
        self.rows = []
        self.reference = None

    def add(self, name, times, notes="", reference=False):
        best = min(times)
        if reference or self.reference is None:
            self.reference = best
        self.rows.append((name, best, float(np.median(times)), len(times), notes, reference))
        return best

    def show(self):
        print()
        print(self.title)
        print(f"  {'implementation':56s} {'best s':>9s} {'median s':>9s} {'runs':>4s} "
              f"{'ratio':>7s}  notes")
        for name, best, median, runs, notes, reference in self.rows:
            ratio = "1.00" if reference else f"{best / self.reference:.2f}"
            print(f"  {name:56s} {best:9.3f} {median:9.3f} {runs:4d} {ratio:>7s}  {notes}")
        print(f"  (ratio = time / time of the first minivec2vec row; load average now: "
              f"{_loadavg()})")
        sys.stdout.flush()


# ------------------------------------------------------------------------------------------
# kNN
# ------------------------------------------------------------------------------------------
def _simd_flags():
    """The x86 SIMD flags of /proc/cpuinfo that decide the kNN engine (empty elsewhere)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512bw",
                                                  "avx512vl", "avx512_vnni", "avx_vnni")]
    except OSError:
        pass
    return []


def case_knn(args, data):
    import minivec2vec
    from threadpoolctl import threadpool_limits
    try:
        import faiss
    except ImportError:
        faiss = None

    if args.quick:
        n_queries, n_database = 1000, 10000
    else:
        n_queries, n_database = 10000, 60000
    if not data.shared:
        n_queries, n_database = 1000, 4000
    k, d, block = 50, 384, 1024
    Q = data.rows("minilm", 0, n_queries)
    D = data.rows("minilm", n_queries, n_queries + n_database)
    n_queries, n_database = Q.shape[0], D.shape[0]
    flop = 2.0 * n_queries * n_database * d

    def gflops(seconds):
        return f"{flop / seconds / 1e9:6.1f} GFLOP/s"

    # warm-up: Numba/C++ kernels, worker pools, faiss OpenMP
    minivec2vec.knn(Q[:64], D[:4096], k, n_threads=args.threads)
    if faiss is not None:
        warm = faiss.IndexFlatIP(d)
        warm.add(D[:4096])
        warm.search(Q[:64], k)

    table = Table(f"kNN: {n_queries} queries x {n_database} database x {d}, k={k}, "
                  f"inner product, float32, {args.threads} threads")
    (ours_scores, ours_idx), t = timed(
        lambda: minivec2vec.knn(Q, D, k, metric="ip", n_threads=args.threads), args.repeat)
    knn_module = __import__("importlib").import_module("minivec2vec.knn")
    ours = table.add(f"minivec2vec.knn (engine {knn_module.ENGINE!r}, the default)", t,
                     gflops(min(t)), reference=True)
    for engine in knn_module.available_engines():   # every other engine this CPU runs
        if engine == knn_module.ENGINE:
            continue
        (_, idx), t = timed(lambda engine=engine: minivec2vec.knn(
            Q, D, k, metric="ip", n_threads=args.threads, engine=engine), args.repeat)
        table.add(f"minivec2vec.knn(engine={engine!r})", t,
                  f"{gflops(min(t))}; recall vs the default {_recall(ours_idx, idx):.5f}")

    if faiss is not None:
        index = faiss.IndexFlatIP(d)
        _, t_add = timed(lambda: index.add(D), 1)
        (_, faiss_idx), t = timed(lambda: index.search(Q, k), args.repeat)
        rec = _recall(ours_idx, faiss_idx)
        table.add("faiss IndexFlatIP.search", t,
                  f"{gflops(min(t))}; add() {t_add[0]:.3f} s not included; "
                  f"recall of ours vs faiss {rec:.5f}")
    else:
        table.add("faiss IndexFlatIP.search (faiss not installed)", [math.nan])

    buffer = np.empty((min(block, n_queries), n_database), dtype=np.float32)

    def gemm_only(buffer=buffer):
        for start in range(0, n_queries, block):
            q = Q[start:start + block]
            np.matmul(q, D.T, out=buffer[:q.shape[0]])

    with threadpool_limits(limits=args.threads, user_api="blas"):
        gemm_only()  # warm-up
        _, t = timed(gemm_only, args.repeat)
    gemm = table.add(f"numpy GEMM only, blocks of {block} (no top-k)", t,
                     f"{gflops(min(t))}; our rate = {min(t) / ours:.0%} of the GEMM-only rate")
    table.show()
    del buffer
    return {"ours": ours, "gemm": gemm}


def _recall(found, truth):
    k = truth.shape[1]
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / (truth.shape[0] * k)


# ------------------------------------------------------------------------------------------
# k-means
# ------------------------------------------------------------------------------------------
def case_kmeans(args, data):
    import minivec2vec
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if args.quick:
        n, n_clusters = 10000, 100
    else:
        n, n_clusters = 60000, 500
    if not data.shared:
        n, n_clusters = 5000, 100
    X = centred_unit(data.rows("minilm", 0, n))
    n = X.shape[0]
    batch = 2048
    # scikit-learn counts max_iter in passes over the data: steps = (max_iter * n) // batch
    epochs = math.ceil(100 * batch / n)
    steps = (epochs * n) // batch
    # our default k-means++ sample, which is also scikit-learn's (3 batches)
    init_size = min(n, 3 * batch if 3 * batch >= n_clusters else 3 * n_clusters)
    common = dict(random_state=SEED, batch_size=batch, init_size=init_size,
                  n_threads=args.threads)

    minivec2vec.kmeans(X[:4096], 16, random_state=SEED, max_iter=2, n_threads=args.threads)

    table = Table(f"k-means: {n} x {X.shape[1]} (centred unit rows), {n_clusters} clusters, "
                  f"{args.threads} threads; mini-batch: {steps} steps of {batch} rows "
                  f"(sklearn max_iter={epochs} epochs), k-means++ on {init_size} rows")
    (_, _, inertia), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, max_iter=steps, lloyd_passes=0, **common),
        args.repeat)
    ours = table.add("minivec2vec.kmeans, mini-batch only", t,
                     f"inertia {inertia:.2f} (lloyd_passes=0)", reference=True)
    (_, _, inertia2), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, random_state=SEED, n_threads=args.threads),
        args.repeat)
    defaults = inspect.signature(minivec2vec.kmeans).parameters
    table.add("minivec2vec.kmeans, all defaults", t,
              f"inertia {inertia2:.2f} (batch_size={defaults['batch_size'].default}, "
              f"max_iter={defaults['max_iter'].default}, "
              f"lloyd_passes={defaults['lloyd_passes'].default})")

    def sk_minibatch():
        return MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch, max_iter=epochs, tol=0.0,
                               max_no_improvement=None, n_init=1, init_size=init_size,
                               random_state=SEED).fit(X)

    model, t = timed(sk_minibatch, args.repeat)
    table.add("sklearn MiniBatchKMeans (same steps)", t,
              f"inertia {model.inertia_:.2f} ({model.n_steps_} steps)")

    def sk_lloyd():
        return KMeans(n_clusters=n_clusters, n_init=1, random_state=SEED).fit(X)

    model, t = timed(sk_lloyd, 1)
    table.add("sklearn KMeans (Lloyd, n_init=1, k-means++ on all rows)", t,
              f"inertia {model.inertia_:.2f} ({model.n_iter_} iterations)")
    (_, _, inertia3), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, random_state=SEED, max_iter=0,
                                   lloyd_passes=300, init_size=n, n_threads=args.threads), 1)
    table.add("minivec2vec.kmeans as Lloyd (k-means++ on all)", t,
              f"inertia {inertia3:.2f} (max_iter=0, lloyd_passes=300, init_size=n)")
    table.show()
    return {"ours": ours}


# ------------------------------------------------------------------------------------------
# Procrustes
# ------------------------------------------------------------------------------------------
def case_procrustes(args, data):
    import minivec2vec
    from scipy.linalg import orthogonal_procrustes
    from threadpoolctl import threadpool_limits

    n = 5000 if args.quick else 30000
    X = data.rows("minilm", 0, n)
    if data.has("minilm-static"):
        Y = data.rows("minilm-static", 0, n)
        what = "minilm -> minilm-static (true pairs, both 384-d)"
    else:
        # the sample has no second 384-d model: a rotated, noisy copy stands in for it
        rng = np.random.default_rng(SEED)
        R = np.linalg.qr(rng.standard_normal((X.shape[1], X.shape[1])))[0]
        Y = X @ R + 0.5 * X.std() * rng.standard_normal(X.shape)
        what = "FALLBACK minilm -> minilm @ random rotation + noise"
    X, Y = centred_unit(X), centred_unit(Y)
    n = X.shape[0]
    pairs = np.arange(n, dtype=np.int64)[:, None]
    minivec2vec.procrustes(minivec2vec.neighbour_cross_covariance(X[:512], Y[:512], pairs[:512]))

    table = Table(f"Procrustes: {n} pairs x {X.shape[1]}, {what}, float32 in, "
                  f"{args.threads} threads")

    def ours():
        M = minivec2vec.neighbour_cross_covariance(X, Y, pairs, n_threads=args.threads)
        return minivec2vec.procrustes(M)

    W_ours, t = timed(ours, args.repeat)
    best = table.add("minivec2vec cross-covariance + procrustes", t, "", reference=True)
    M, t = timed(lambda: minivec2vec.neighbour_cross_covariance(X, Y, pairs,
                                                                n_threads=args.threads),
                 args.repeat)
    table.add("  of which neighbour_cross_covariance (k=1)", t, "float64 accumulation")
    _, t = timed(lambda: minivec2vec.procrustes(M), args.repeat)
    table.add("  of which procrustes(M)", t, f"polar factor of the {M.shape[0]} x {M.shape[1]} M")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        (W_scipy, _), t = timed(lambda: orthogonal_procrustes(X, Y), args.repeat)
        W_ref, _ = orthogonal_procrustes(X.astype(np.float64), Y.astype(np.float64))
    # minilm's centred rows span only ~381 of 384 dimensions, so M is rank-deficient and W is
    # arbitrary on the null directions: compare the maps on the data (rows of X are unit
    # vectors, so these differences are on the scale of W's entries) and by the objective
    rank = int(np.sum(np.linalg.svd(M, compute_uv=False) > 1e-10 * np.abs(M).max()))
    probe = X[:2000].astype(np.float64)

    def on_data(W1, W2):
        return np.abs(probe @ (W1 - W2)).max()

    def gap(W):
        return 1.0 - np.trace(W.T @ M) / np.trace(W_ref.T @ M)

    table.add("scipy.linalg.orthogonal_procrustes", t,
              f"max|W_ours - W_scipy| = {np.abs(W_ours - W_scipy).max():.1e} (M has rank {rank}"
              f" of {M.shape[0]}); on the data max|X W_ours - X W_scipy| = "
              f"{on_data(W_ours, W_scipy):.1e}; vs float64 scipy: ours {on_data(W_ours, W_ref):.1e}"
              f", scipy {on_data(W_scipy, W_ref):.1e}; objective gap ours {gap(W_ours):.1e}, "
              f"scipy {gap(W_scipy):.1e}")
    table.show()
    return {"ours": best}


# ------------------------------------------------------------------------------------------
# whole fit: ours and a dense "notebook" formulation, each in its own process
# ------------------------------------------------------------------------------------------
LIGHT = dict(n_runs=3, n_clusters=20, anchor_sample=2000, qap_restarts=5, n_neighbors=20,
             refine_iter=10, refine_sample=1000, refine_neighbors=20, refine_clusters=100,
             mutual_iter=3, mutual_sample=2000, mutual_final_sample=2000)
STAGE_KEYS = ("n_runs", "n_clusters", "anchor_sample", "qap_restarts", "n_neighbors",
              "refine_iter", "refine_sample", "refine_neighbors", "alpha", "refine_clusters",
              "reproject", "mutual_iter", "mutual_sample", "mutual_final_sample", "csls_k")
PAPER_STAGES = ("anchors", "pseudo_pairs", "refine_matching", "refine_clusters")


def fit_settings(quick):
    """The stage settings both implementations use: our defaults (LIGHT ones with --quick)."""
    import minivec2vec
    params = minivec2vec.MiniVec2Vec().get_params()
    settings = {key: params[key] for key in STAGE_KEYS if key in params}
    if quick:
        settings.update(LIGHT)
    return settings


def fit_sizes(args, data):
    """(rows per training side, test pool)."""
    if not data.shared:
        return None, None                      # the sample's own protocol split
    return (3000, 2000) if args.quick else (30000, 8192)


def load_split(args, data):
    from minivec2vec.evaluation import datasets, protocol
    n_side, pool = fit_sizes(args, data)
    if n_side is None:
        return datasets.sample_split("minilm", "wordllama", rotate_seed=SEED)
    n = 2 * n_side + pool
    A = data.rows("minilm", 0, n)
    B = data.rows("wordllama", 0, n)
    return protocol.split(A, B, pool=pool, rotate_b=protocol.random_rotation(B.shape[1], SEED))


def fit_worker(args):
    """Child process: one fit, then a JSON line with its time, quality and memory."""
    import minivec2vec
    if args.fit_worker == "dense":
        import scipy.optimize  # noqa: F401  (load the pools before limiting them)
        import sklearn.cluster  # noqa: F401
    limit_threads(args.threads)
    from minivec2vec.evaluation import protocol
    data = Data(args.data)
    split = load_split(args, data)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = fit_settings(args.quick)
    start = time.perf_counter()
    if args.fit_worker in ("ours", "ours-paper"):
        # one restart: the dense formulation has no restarts, so both do the same work
        extra = {"n_restarts": 1}
        if args.quick:
            extra.update(LIGHT)
        if args.fit_worker == "ours-paper":
            extra["mutual_iter"] = 0
        model = minivec2vec.MiniVec2Vec(random_state=SEED, n_threads=args.threads,
                                        **extra).fit(split.train_a, split.train_b)
        seconds = time.perf_counter() - start
        scores = protocol.evaluate_model(model, split)
        stages = model.timings_
    else:
        W, mean_a, mean_b, stages = dense_fit(split.train_a, split.train_b, settings, SEED)
        seconds = time.perf_counter() - start
        mapped = _normalise(split.test_a.astype(np.float32) - mean_a.astype(np.float32)) \
            @ W.astype(np.float32)
        scores = minivec2vec.evaluate(mapped, split.test_b - mean_b.astype(np.float32),
                                      pool=None)
    ceiling = protocol.supervised_ceiling(split)
    print("RESULT " + json.dumps({
        "seconds": seconds, "top1": scores["top1"], "mean_rank": scores["mean_rank"],
        "ceiling_top1": ceiling["top1"], "rss_loaded_kb": rss_loaded,
        "n_train": [int(split.train_a.shape[0]), int(split.train_b.shape[0])],
        "n_test": int(split.test_a.shape[0]),
        "stages": {k: round(v, 2) for k, v in stages.items()}}), flush=True)


def _normalise(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def run_fit_process(args, which):
    """Run one fit in a child process: (result dict, peak RSS in MB from wait4)."""
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--fit-worker", which,
           "--threads", str(args.threads), "--data", str(args.data)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"fit worker {which!r} failed with exit code {proc.returncode}")
    line = [x for x in output.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):]), usage.ru_maxrss / 1024.0


def case_fit(args, data):
    import minivec2vec
    settings = fit_settings(args.quick)
    has_mutual = "mutual_iter" in minivec2vec.MiniVec2Vec().get_params()
    n_side, pool = fit_sizes(args, data)
    size = ("the sample's protocol split (2000 + 2000 train, 1000 test)" if n_side is None
            else f"{n_side} + {n_side} training rows, {pool} test pairs")
    table = Table(f"Whole fit: minilm (A) -> wordllama (B, randomly rotated), {size}, "
                  f"{args.threads} threads, {'LIGHT' if args.quick else 'default'} settings, "
                  "one process per fit (peak RSS via wait4)")
    print(f"\nfit settings of both implementations: {settings}")
    runs = [("ours", "minivec2vec MiniVec2Vec.fit (defaults, n_restarts=1)")]
    if has_mutual:
        runs.append(("ours-paper", "minivec2vec fit, paper stages (mutual_iter=0)"))
    if not args.no_dense:
        runs.append(("dense", "dense notebook formulation of the same fit"))
    results = {}
    for which, name in runs:
        result, peak_mb = run_fit_process(args, which)
        results[which] = result
        table.add(name, [result["seconds"]],
                  f"top-1 {result['top1']:.3f} (ceiling {result['ceiling_top1']:.3f}), "
                  f"peak RSS {peak_mb:.0f} MB (data loaded: {result['rss_loaded_kb'] / 1024:.0f} "
                  f"MB)", reference=(which == "ours"))
        print(f"  [{name}] stage seconds: {result['stages']}")
        sys.stdout.flush()
    if "dense" in results:
        # the dense pipeline runs the paper's four stages first, then refine-mutual: the sum of
        # its first four stage times is the dense formulation of the paper's pipeline
        paper_seconds = sum(results["dense"]["stages"][k] for k in PAPER_STAGES)
        table.add("dense notebook formulation, its paper stages alone", [paper_seconds],
                  "sum of its anchors, pseudo_pairs, refine_matching, refine_clusters times")
    table.show()
    if "dense" in results:
        print(f"  dense / ours, default fit (same stages, refine-mutual included): "
              f"{results['dense']['seconds'] / results['ours']['seconds']:.2f}")
        if "ours-paper" in results:
            print(f"  dense / ours, paper stages only: "
                  f"{paper_seconds / results['ours-paper']['seconds']:.2f}")
    return results


def dense_fit(X_a, X_b, settings, seed):
    """The paper's stages written the direct way: every similarity matrix in full.

    Anchors: scikit-learn KMeans on a sample of each side, clusters matched by scipy's
    quadratic_assignment (2-opt, best of ``qap_restarts`` random starts) on the centred Gram
    matrices of the centroids. Pseudo-pairs: relative representations (cosine to the
    anchors), the full n_a x n_b cosine matrix, top-k by argpartition, mean of the k B rows.
    Refine-1: dense (sample x n_b) scores, argpartition, Procrustes, smoothing. Refine-2:
    KMeans on A, KMeans on B started at A's centroids mapped by W, Procrustes on the centroids.
    Refine-mutual (our default's last stage): on fresh subsamples of both sides (the same
    growing pass sizes as ours), the full CSLS
    matrix 2 S - r_A - r_B (r = mean of the k best similarities by np.partition), argmax both
    ways, Procrustes on the mutual pairs.
    Returns (W, mean_a, mean_b, stage seconds).
    """
    from scipy.linalg import svd
    from scipy.optimize import quadratic_assignment
    from sklearn.cluster import KMeans

    from minivec2vec.stages.refine import mutual_schedule  # the list of pass sizes, nothing else

    rng = np.random.default_rng(seed)
    s = settings
    stages = {}
    mean_a = X_a.astype(np.float64).mean(axis=0)
    mean_b = X_b.astype(np.float64).mean(axis=0)
    A = _normalise(X_a.astype(np.float32) - mean_a.astype(np.float32))
    B = _normalise(X_b.astype(np.float32) - mean_b.astype(np.float32))

    def new_seed():
        return int(rng.integers(2**31 - 1))

    def polar(W):
        U, _, Vt = svd(W, full_matrices=False)
        return U @ Vt

    def smooth(W, W_new):
        W = (1.0 - s["alpha"]) * W + s["alpha"] * W_new
        return polar(W) if s.get("reproject", True) else W

    # 1. anchors
    t = time.perf_counter()
    anchors_a, anchors_b = [], []
    for _ in range(s["n_runs"]):
        centroids = []
        for X in (A, B):
            rows = X[rng.choice(X.shape[0], min(s["anchor_sample"], X.shape[0]), replace=False)]
            km = KMeans(n_clusters=s["n_clusters"], n_init=1, random_state=new_seed()).fit(rows)
            centroids.append(km.cluster_centers_.astype(np.float64))
        grams = []
        for C in centroids:
            C = C - C.mean(axis=0)
            grams.append(C @ C.T)
        best = None
        for _ in range(s["qap_restarts"]):
            res = quadratic_assignment(grams[0], grams[1], method="2opt",
                                       options={"maximize": True,
                                                "rng": np.random.default_rng(new_seed())})
            if best is None or res.fun > best.fun:
                best = res
        anchors_a.append(centroids[0])
        anchors_b.append(centroids[1][best.col_ind])
    stages["anchors"] = time.perf_counter() - t

    # 2. pseudo-pairs from relative representations, with the full similarity matrix
    t = time.perf_counter()
    k = min(s["n_neighbors"], B.shape[0])
    rel_a = _normalise(A @ _normalise(np.concatenate(anchors_a)).astype(np.float32).T)
    rel_b = _normalise(B @ _normalise(np.concatenate(anchors_b)).astype(np.float32).T)
    S = rel_a @ rel_b.T                                   # n_a x n_b, float32
    neighbours = _dense_topk(S, k)
    del S
    targets = B[neighbours].mean(axis=1)                  # (n_a, k, d_b) gathered at once
    W = dense_procrustes(A, targets)
    stages["pseudo_pairs"] = time.perf_counter() - t

    # 3. refine-1
    t = time.perf_counter()
    k = min(s["refine_neighbors"], B.shape[0])
    for _ in range(s["refine_iter"]):
        rows = A[rng.choice(A.shape[0], min(s["refine_sample"], A.shape[0]), replace=False)]
        S = (rows @ W.astype(np.float32)) @ B.T           # sample x n_b
        neighbours = np.argpartition(-S, k - 1, axis=1)[:, :k]
        W = smooth(W, dense_procrustes(rows, B[neighbours].mean(axis=1)))
    stages["refine_matching"] = time.perf_counter() - t

    # 4. refine-2
    t = time.perf_counter()
    if s["refine_clusters"]:
        C_a = KMeans(n_clusters=s["refine_clusters"], n_init=1,
                     random_state=new_seed()).fit(A).cluster_centers_
        C_b = KMeans(n_clusters=s["refine_clusters"], n_init=1,
                     init=(C_a @ W).astype(np.float32)).fit(B).cluster_centers_
        W = smooth(W, dense_procrustes(C_a, C_b))
    stages["refine_clusters"] = time.perf_counter() - t

    # 5. refine-mutual
    t = time.perf_counter()
    # the same pass sizes as ours (first half fixed, then growing to mutual_final_sample)
    for size in mutual_schedule(s.get("mutual_iter", 0), s["mutual_sample"],
                                s["mutual_final_sample"]):
        rows_a = A[rng.choice(A.shape[0], min(size, A.shape[0]), replace=False)]
        rows_b = B[rng.choice(B.shape[0], min(size, B.shape[0]), replace=False)]
        S = _normalise(rows_a @ W.astype(np.float32)) @ rows_b.T
        k = min(s["csls_k"], S.shape[0], S.shape[1])
        r_a = -np.partition(-S, k - 1, axis=1)[:, :k].mean(axis=1)
        r_b = -np.partition(-S, k - 1, axis=0)[:k, :].mean(axis=0)
        csls = 2.0 * S - r_a[:, None] - r_b[None, :]
        forward, backward = csls.argmax(axis=1), csls.argmax(axis=0)
        del S, csls
        mutual = np.flatnonzero(backward[forward] == np.arange(forward.shape[0]))
        if mutual.size < 2:
            break
        W = dense_procrustes(rows_a[mutual], rows_b[forward[mutual]])
    stages["refine_mutual"] = time.perf_counter() - t
    return W, mean_a, mean_b, stages


def _dense_topk(S, k, chunk=2048):
    """Top-k column indices per row of a dense matrix. argpartition runs on row chunks only
    so that its int64 index array does not add 2x the matrix to the peak memory."""
    out = np.empty((S.shape[0], k), dtype=np.int64)
    for start in range(0, S.shape[0], chunk):
        out[start:start + chunk] = np.argpartition(-S[start:start + chunk], k - 1,
                                                   axis=1)[:, :k]
    return out


def dense_procrustes(X, Y):
    """W (d_x x d_y) maximising trace(W^T X^T Y) with scipy's orthogonal_procrustes.

    scipy needs equal shapes; with d_x != d_y the narrower side is padded with zero columns,
    which leaves the optimum's relevant block unchanged (it is the semi-orthogonal solution).
    """
    from scipy.linalg import orthogonal_procrustes
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    d_x, d_y = X.shape[1], Y.shape[1]
    if d_x > d_y:
        R, _ = orthogonal_procrustes(X, np.pad(Y, ((0, 0), (0, d_x - d_y))))
        return R[:, :d_y]
    if d_x < d_y:
        R, _ = orthogonal_procrustes(np.pad(X, ((0, 0), (0, d_y - d_x))), Y)
        return R[:d_x, :]
    return orthogonal_procrustes(X, Y)[0]


# ------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    if args.fit_worker:
        fit_worker(args)
        return
    import sklearn.cluster  # noqa: F401  (load every pool before limiting them)
    import scipy.linalg  # noqa: F401
    try:
        import faiss  # noqa: F401
    except ImportError:
        pass
    import minivec2vec  # noqa: F401
    limit_threads(args.threads)
    print_environment(args)
    data = Data(args.data)
    print(f"data: {data.describe()}")
    if args.quick:
        print("QUICK mode: small sizes, light fit settings; numbers only check the script")
    started = time.perf_counter()
    cases = {"knn": case_knn, "kmeans": case_kmeans, "procrustes": case_procrustes,
             "fit": case_fit}
    for name in ("knn", "kmeans", "procrustes", "fit"):
        if name in args.cases:
            cases[name](args, data)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; load average at the end: "
          f"{_loadavg()}")


if __name__ == "__main__":
    main()
