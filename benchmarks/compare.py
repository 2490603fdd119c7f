#!/usr/bin/env python
"""Timings of minivec2vec's kernels next to their usual peers, on the same data, in one run.

    python benchmarks/compare.py --quick                 # small sizes, < 1 min: checks the script
    python benchmarks/compare.py --cases knn,kmeans,procrustes

The whole fit against a dense formulation of the method is benchmarks/notebook_baseline.py.
Both print first what decides the speed (benchmarks/harness.py): the CPU and its SIMD flags,
the kNN engine (and whether MINIVEC2VEC_KNN_ENGINE forced it), faiss's SIMD level, the BLAS
pools and their kernels (threadpoolctl), the forcing variables and the load average.

Cases (real vectors from <repo>/../shared/data, float16 -> float32; the 5000-row sample shipped
in the package when that folder is absent, with reduced sizes, which is printed):

* knn: 10,000 queries x 60,000 database x 384, k = 50. minivec2vec.knn (the default engine and
  every other engine this CPU runs) against faiss IndexFlatIP, and against the GEMM alone
  (numpy Q @ D.T in blocks of 1024 queries, no selection: the physical bound of a float32
  exact search).
* kmeans: 60,000 x 384, 500 clusters, and the anchor stage's size, 10,000 x 384 with 20
  clusters. minivec2vec.kmeans with its defaults against scikit-learn's MiniBatchKMeans with
  its defaults, then both with the same batch size, number of steps and k-means++ sample; and
  ours run as plain Lloyd (max_iter=0, lloyd_passes=300, k-means++ on all rows) against
  scikit-learn's KMeans (Lloyd, n_init=1). Inertias are printed with the times.
* procrustes: 30,000 row-aligned pairs x 384. The streamed cross-covariance + procrustes
  against scipy.linalg.orthogonal_procrustes.

To time an AVX2-only machine on a newer CPU, hold every library to AVX2:
    OPENBLAS_CORETYPE=Haswell FAISS_SIMD_LEVEL=AVX2 MINIVEC2VEC_KNN_ENGINE=int8-avx2 (or blas)
(this faiss build reads FAISS_SIMD_LEVEL; FAISS_OPT_LEVEL only picks a separately built
wrapper, if any). Such a run is the newer CPU held to AVX2, not an AVX2 CPU: its caches,
clocks and memory stay the newer CPU's.

Every implementation gets the same thread count (--threads): our n_threads, BLAS and OpenMP
pools through threadpoolctl, faiss.omp_set_num_threads. Each implementation runs --repeat
times; the table gives the best and the median, and ratio = median time of the row / median
time of the reference minivec2vec row, so a peer's ratio > 1 means minivec2vec is faster.
"""
from __future__ import annotations

import argparse
import inspect
import math
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import (DEFAULT_DATA, SEED, Table, centred_unit, loadavg, start_run,  # noqa: E402
                     timed)

CASES = ("knn", "kmeans", "procrustes")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {','.join(CASES)} (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (< 1 min): checks the script")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs per implementation (default 3, quick 1)")
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="folder holding minilm.npy, wordllama.npy, minilm-static.npy")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if "fit" in args.cases:
        parser.error("the whole fit against the dense formulation is now "
                     "benchmarks/notebook_baseline.py")
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases: {sorted(unknown)}")
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


# ------------------------------------------------------------------------------------------
# kNN
# ------------------------------------------------------------------------------------------
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
                     gflops(np.median(t)), reference=True)
    # every other engine this CPU runs, none better than the default: a run forced to
    # int8-avx2 or blas stands for a CPU that has nothing better
    engines = knn_module.available_engines()
    for engine in engines[engines.index(knn_module.ENGINE) + 1:]:
        (_, idx), t = timed(lambda engine=engine: minivec2vec.knn(
            Q, D, k, metric="ip", n_threads=args.threads, engine=engine), args.repeat)
        table.add(f"minivec2vec.knn(engine={engine!r})", t,
                  f"{gflops(np.median(t))}; recall vs the default {_recall(ours_idx, idx):.5f}")

    if faiss is not None:
        index = faiss.IndexFlatIP(d)
        _, t_add = timed(lambda: index.add(D), 1)
        (_, faiss_idx), t = timed(lambda: index.search(Q, k), args.repeat)
        rec = _recall(ours_idx, faiss_idx)
        table.add("faiss IndexFlatIP.search", t,
                  f"{gflops(np.median(t))}; add() {t_add[0]:.3f} s not included; "
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
                     f"{gflops(np.median(t))}; our rate = {np.median(t) / ours:.0%} of the "
                     "GEMM-only rate (medians)")
    table.show()
    del buffer
    return {"ours": ours, "gemm": gemm}


def _recall(found, truth):
    k = truth.shape[1]
    hits = sum(np.intersect1d(f, t).size for f, t in zip(found, truth))
    return hits / (truth.shape[0] * k)


# ------------------------------------------------------------------------------------------

# ------------------------------------------------------------------------------------------
# k-means
# ------------------------------------------------------------------------------------------
def case_kmeans(args, data):
    sizes = [(10000, 100)] if args.quick else [(60000, 500), (10000, 20)]
    if not data.shared:
        sizes = [(5000, 100)]
    return [kmeans_table(args, data, n, n_clusters) for n, n_clusters in sizes]


def kmeans_table(args, data, n, n_clusters):
    import minivec2vec
    from minivec2vec.kernels.kmeans import default_lloyd_passes
    from sklearn.cluster import KMeans, MiniBatchKMeans

    X = centred_unit(data.rows("minilm", 0, n))
    n = X.shape[0]
    repeat = args.repeat
    lloyd_repeat = max(1, min(repeat, 2)) if n * n_clusters > 1e6 else repeat
    minivec2vec.kmeans(X[:4096], 16, random_state=SEED, max_iter=2, n_threads=args.threads)
    defaults = inspect.signature(minivec2vec.kmeans).parameters
    table = Table(f"k-means: {n} x {X.shape[1]} (centred unit rows of minilm), {n_clusters} "
                  f"clusters, {args.threads} threads")

    # 1. both libraries' defaults
    (_, _, inertia), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, random_state=SEED, n_threads=args.threads),
        repeat)
    table.add("minivec2vec.kmeans, all defaults", t,
              f"inertia {inertia:.2f} (batch_size={defaults['batch_size'].default}, "
              f"max_iter={defaults['max_iter'].default}, "
              f"lloyd_passes={defaults['lloyd_passes'].default}: "
              f"{default_lloyd_passes(n, defaults['batch_size'].default, defaults['max_iter'].default)}"
              f" here)", reference=True)
    model, t = timed(lambda: MiniBatchKMeans(n_clusters=n_clusters, n_init=1,
                                             random_state=SEED).fit(X), repeat)
    table.add("sklearn MiniBatchKMeans, defaults", t,
              f"inertia {model.inertia_:.2f} (batch_size={model.batch_size}, "
              f"{model.n_steps_} steps, early stopping)")

    # 2. the mini-batch steps alone, with equal batches, steps and k-means++ sample
    batch = 2048
    # scikit-learn counts max_iter in passes over the data: steps = (max_iter * n) // batch
    epochs = math.ceil(100 * batch / n)
    steps = (epochs * n) // batch
    init_size = min(n, 3 * batch if 3 * batch >= n_clusters else 3 * n_clusters)
    (_, _, inertia), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, random_state=SEED, batch_size=batch,
                                   max_iter=steps, lloyd_passes=0, init_size=init_size,
                                   n_threads=args.threads), repeat)
    table.add(f"minivec2vec.kmeans, mini-batch only, {steps} steps", t,
              f"inertia {inertia:.2f} (batch {batch}, k-means++ on {init_size} rows, "
              f"lloyd_passes=0)")
    model, t = timed(lambda: MiniBatchKMeans(
        n_clusters=n_clusters, batch_size=batch, max_iter=epochs, tol=0.0,
        max_no_improvement=None, n_init=1, init_size=init_size, random_state=SEED).fit(X),
        repeat)
    table.add("sklearn MiniBatchKMeans, same batch, steps, sample", t,
              f"inertia {model.inertia_:.2f} ({model.n_steps_} steps, max_iter={epochs})")

    # 3. Lloyd against Lloyd, k-means++ on all rows
    (_, _, inertia), t = timed(
        lambda: minivec2vec.kmeans(X, n_clusters, random_state=SEED, max_iter=0,
                                   lloyd_passes=300, init_size=n, n_threads=args.threads),
        lloyd_repeat)
    lloyd = table.add("minivec2vec.kmeans as Lloyd (k-means++ on all)", t,
                      f"inertia {inertia:.2f} (max_iter=0, lloyd_passes=300, init_size=n)")
    model, t = timed(lambda: KMeans(n_clusters=n_clusters, n_init=1,
                                    random_state=SEED).fit(X), lloyd_repeat)
    sk_lloyd = table.add("sklearn KMeans (Lloyd, n_init=1, k-means++ on all rows)", t,
                         f"inertia {model.inertia_:.2f} ({model.n_iter_} iterations)")
    table.show()
    print(f"  sklearn KMeans / our Lloyd (medians): {sk_lloyd / lloyd:.2f}")
    return table

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
def main(argv=None):
    args = parse_args(argv)
    data = start_run(args, "small sizes")
    started = time.perf_counter()
    cases = {"knn": case_knn, "kmeans": case_kmeans, "procrustes": case_procrustes}
    for name in CASES:
        if name in args.cases:
            cases[name](args, data)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; load average at the end: "
          f"{loadavg()}")


if __name__ == "__main__":
    main()
