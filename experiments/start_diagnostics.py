"""Where an unpaired fit fails: the start, or the refinement? Diagnostics that use TRUE pairs.

For a pair A -> B of ../shared/data (the protocol of quality.py: last 8192 rows held out, A
trains on the first half of the rest, B on the second, B's coordinates rotated by seed 1000),
W* is the supervised map (Procrustes on the true pairs of A's training rows). Printed:

* ``basin``: refine-mutual (the default schedule) started from W* turned by a random rotation
  exp(t S) (S skew-symmetric, unit spectral norm) for each ``--angles`` t: the start's top-1
  and its agreement with W* (mean cosine between the images of 2,000 test rows), then where
  refine-mutual ends. It tells how close to the truth a start must be.
* ``pca``: how well the principal axes correspond under W* (|u_a_i^T W* u_b_i| for the first
  axes), whether third moments tell their signs, and the map that pairs axis i with axis i.
* ``qap``: ``--trials`` anchor runs (10,000 rows per side, k-means with ``--clusters``): the
  mean cosine of the centroids matched under W* (Hungarian), the CKA of that matching, the
  CKA the 2-opt QAP reaches and the fraction of clusters it matches as W* does.

    python experiments/start_diagnostics.py --pair minilm:e5 --angles 0.3,1,2.5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.linalg import expm
from scipy.optimize import linear_sum_assignment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def load(a, b, pool=8192, seed=0):
    from minivec2vec.kernels.rows import centre_normalise, column_mean
    from minivec2vec.kernels.procrustes import procrustes
    from minivec2vec.evaluation.protocol import random_rotation, split

    s = split(np.load(DATA / f"{a}.npy"), np.load(DATA / f"{b}.npy"), pool=pool,
              rotate_b=random_rotation(np.load(DATA / f"{b}.npy", mmap_mode="r").shape[1],
                                       1000 + seed))
    mean_a, mean_b = column_mean(s.train_a), column_mean(s.train_b)
    d = {name: centre_normalise(X, mean, name) for name, X, mean in (
        ("A", s.train_a, mean_a), ("B", s.train_b, mean_b), ("TA", s.test_a, mean_a),
        ("TB", s.test_b, mean_b), ("PB", s.paired_train_b, mean_b))}
    d["Wstar"] = procrustes(d["A"].T.astype(np.float64) @ d["PB"].astype(np.float64))
    return d


def score(W, d):
    """(top-1, mean rank, agreement with W*) of a map."""
    from minivec2vec.evaluation.metrics import evaluate
    r = evaluate(d["TA"] @ W.astype(np.float32), d["TB"])
    probe = d["TA"][:2000]
    agree = np.mean(np.sum(_unit(probe @ W.astype(np.float32))
                           * _unit(probe @ d["Wstar"].astype(np.float32)), axis=1))
    return r["top1"], r["mean_rank"], float(agree)


def basin(d, angles, n_threads):
    from minivec2vec.stages.refine import refine_mutual
    rng = np.random.default_rng(0)
    S = rng.standard_normal((d["A"].shape[1],) * 2)
    S = S - S.T
    S /= np.linalg.norm(S, 2)
    for t in angles:
        W0 = expm(t * S) @ d["Wstar"]
        t0 = time.perf_counter()
        W = refine_mutual(W0, d["A"], d["B"], n_iter=12, sample_size=10000,
                          final_sample_size=30000, csls_k=10, rng=np.random.default_rng(1),
                          n_threads=n_threads)
        start, end = score(W0, d), score(W, d)
        print(f"basin t={t}: start top-1 {start[0]:.3f} (agreement {start[2]:.3f}) -> "
              f"top-1 {end[0]:.3f}, mean rank {end[1]:.2f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)


def pca(d):
    A, B, W = (d["A"].astype(np.float64), d["B"].astype(np.float64), d["Wstar"])
    e_a, U_a = np.linalg.eigh(A.T @ A / len(A))
    e_b, U_b = np.linalg.eigh(B.T @ B / len(B))
    e_a, U_a, e_b, U_b = e_a[::-1], U_a[:, ::-1], e_b[::-1], U_b[:, ::-1]
    k = min(U_a.shape[1], U_b.shape[1])
    C = U_a.T @ W @ U_b
    print("pca: variance share of the first 5 axes, A", np.round(e_a[:5] / e_a.sum(), 3),
          "B", np.round(e_b[:5] / e_b.sum(), 3))
    print("pca: |u_a_i W* u_b_i|, first 10 axes", np.round(np.abs(np.diag(C))[:10], 2))
    p_a, p_b = A @ U_a[:, :k], B @ U_b[:, :k]
    skew_a = (p_a ** 3).mean(0) / (p_a ** 2).mean(0) ** 1.5
    skew_b = (p_b ** 3).mean(0) / (p_b ** 2).mean(0) ** 1.5
    signs = np.sign(skew_a * skew_b)
    print("pca: third-moment signs right on the first 20 axes:",
          float(np.mean(signs[:20] == np.sign(np.diag(C)[:20]))))
    top1, rank, agree = score(U_a[:, :k] @ np.diag(signs) @ U_b[:, :k].T, d)
    print(f"pca: axis-to-axis map: top-1 {top1:.4f}, mean rank {rank:.0f}, agreement {agree:.3f}")


def qap(d, n_clusters, trials):
    from minivec2vec.stages.anchors import centred_gram, solve_qap
    from minivec2vec.kernels.kmeans import kmeans
    A, B, W = d["A"], d["B"], d["Wstar"].astype(np.float32)
    rng = np.random.default_rng(0)
    for trial in range(trials):
        C = []
        for X in (A, B):
            rows = X[rng.choice(len(X), min(10000, len(X)), replace=False)]
            C.append(kmeans(rows, n_clusters, random_state=rng, max_iter=0, lloyd_passes=20,
                            init_size=6144, n_threads=1)[0])
        S = _unit(C[0] @ W) @ _unit(C[1]).T
        _, truth = linear_sum_assignment(-S)
        K_a, K_b = centred_gram(C[0]), centred_gram(C[1])
        cka_truth = np.trace(K_a @ K_b[np.ix_(truth, truth)]) / (np.linalg.norm(K_a)
                                                                  * np.linalg.norm(K_b))
        perm, cka_found = solve_qap(K_a, K_b, 30, rng)
        print(f"qap c={n_clusters} trial {trial}: matched centroid cosine under W* "
              f"{S[np.arange(n_clusters), truth].mean():.2f}; CKA at W*'s matching "
              f"{cka_truth:.3f}, found by 2-opt {cka_found:.3f}; same matching "
              f"{np.mean(perm == truth):.2f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="minilm:e5")
    parser.add_argument("--angles", default="0.3,1,2.5")
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--n-threads", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of basin,pca,qap to skip")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"start_diagnostics.py needs the real data in {DATA}", file=sys.stderr)
        return 2
    a, b = args.pair.split(":")
    d = load(a, b)
    top1, rank, _ = score(d["Wstar"], d)
    print(f"{a} -> {b}: supervised ceiling top-1 {top1:.3f}, mean rank {rank:.2f}", flush=True)
    skip = set(args.skip.split(","))
    if "pca" not in skip:
        pca(d)
    if "qap" not in skip:
        qap(d, args.clusters, args.trials)
    if "basin" not in skip:
        basin(d, [float(t) for t in args.angles.split(",")], args.n_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
