#!/usr/bin/env python
"""A default minivec2vec fit against the same fit in a dense "notebook formulation", in one run.

    python benchmarks/notebook_baseline.py --quick       # light settings, small sizes: checks it
    python benchmarks/notebook_baseline.py               # 30,000 + 30,000 rows (dense: minutes)
    python benchmarks/notebook_baseline.py --no-dense    # our fits only

minilm (A) -> wordllama (B, its coordinates randomly rotated), split per the protocol: 30,000 +
30,000 disjoint training rows, 8192 test pairs (real vectors from <repo>/../shared/data; the
sample shipped in the package when that folder is absent). Rows: a default MiniVec2Vec fit
(one restart), the fit restricted to the paper's stages (mutual_iter=0), and the "dense
notebook formulation" of the same stages written below (full similarity matrices,
argpartition, scikit-learn KMeans, scipy quadratic_assignment, scipy orthogonal_procrustes, full
CSLS matrices for refine-mutual); the paper's four stages are also compared alone (ours with
mutual_iter=0 against the sum of the dense pipeline's first four stage times). Each fit runs
in its own process to measure its peak RSS.

This is a baseline of the method written the direct way, not a peer library: the kernels'
comparison against faiss, scikit-learn and scipy is benchmarks/compare.py. Both print the
machine first (benchmarks/harness.py). Every implementation gets the same thread count
(--threads): our n_threads, BLAS and OpenMP pools through threadpoolctl. Ratio = time of the
row / time of our default fit, so > 1 means minivec2vec is faster.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import (DEFAULT_DATA, SEED, Data, Table, limit_threads, loadavg,  # noqa: E402
                     start_run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="threads for every library")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and light fit settings: checks the script")
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA,
                        help="folder holding minilm.npy and wordllama.npy")
    parser.add_argument("--no-dense", action="store_true", help="skip the (slow) dense baseline")
    parser.add_argument("--fit-worker", choices=["ours", "ours-paper", "dense"],
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


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
    data = start_run(args, "small sizes, light fit settings")
    started = time.perf_counter()
    case_fit(args, data)
    print(f"\ntotal {time.perf_counter() - started:.1f} s; load average at the end: {loadavg()}")


if __name__ == "__main__":
    main()
