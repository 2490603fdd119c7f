"""Why the anchor stage fails on some model pairs: diagnostics that use the TRUE pairs.

For a pair A -> B of ../shared/data (protocol of quality.py: last 8192 rows held out, A trains on
the first half of the rest, B on the second, B's coordinates rotated), ``--rows`` A training rows
are drawn together with the B embeddings of the SAME texts (their true partners, used here only
to judge) and an independent B sample of the same size (what the method sees). Printed:

* ``knn``: mean fraction of each text's 10-NN set in A that is also its 10-NN set in B (same
  texts; chance = 10 / rows);
* ``jac AA`` / ``jac AB``: how reproducible a k-means partition is, as the mean over A's clusters
  of the best Jaccard index with a cluster of a second partition of the same texts: another
  k-means run in A, or a k-means run in B;
* ``same``: fraction of clusters the centroid-Gram QAP (the anchor stage's matcher) matches
  correctly when B's partition is A's partition carried over by the true pairs, with the CKA of
  that matching;
* ``indep``: the anchor stage as it runs: independent partitions, QAP; the fraction that agrees
  with the best matching under the supervised map (Hungarian on cosines), the CKA the QAP
  reached, and the CKA of that best matching.

    python experiments/anchor_diagnostics.py --pairs minilm:minilm-static --trials 3

One process, single-threaded kernels (``--n-threads``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_sample(a, b, rows, seed):
    """Centred unit rows: A sample, its true B partners, an independent B sample; the supervised
    map (Procrustes on the true pairs of the A sample)."""
    from minivec2vec.kernels.rows import centre_normalise, column_mean
    from minivec2vec.kernels.procrustes import procrustes
    from minivec2vec.evaluation.protocol import random_rotation, split

    X_a, X_b = np.load(DATA / f"{a}.npy"), np.load(DATA / f"{b}.npy")
    s = split(X_a, X_b, rotate_b=random_rotation(X_b.shape[1], 1000 + seed))
    rng = np.random.default_rng(seed)
    rows_a = np.sort(rng.choice(s.train_a.shape[0], rows, replace=False))
    rows_b = np.sort(rng.choice(s.train_b.shape[0], rows, replace=False))
    mean_a, mean_b = column_mean(s.train_a), column_mean(s.train_b)
    A = centre_normalise(s.train_a[rows_a], mean_a, "A")
    partners = centre_normalise(s.paired_train_b[rows_a], mean_b, "partners")
    B = centre_normalise(s.train_b[rows_b], mean_b, "B")
    W = procrustes(A.T.astype(np.float64) @ partners.astype(np.float64)).astype(np.float32)
    return A, partners, B, W


def neighbour_sets(X, k, n_threads):
    """The k nearest other rows of every row (inner product on unit rows)."""
    from minivec2vec.kernels.knn import knn

    _, indices = knn(X, X, k + 1, n_threads=n_threads)
    self_row = np.arange(X.shape[0])[:, None]
    # drop each row itself (normally first; a duplicate row may take its place)
    keep = indices != self_row
    return np.stack([row[mask][:k] for row, mask in zip(indices, keep)])


def knn_overlap(X, Y, k, n_threads):
    """Mean |N_X(i) & N_Y(i)| / k over rows i of two embeddings of the same texts."""
    nx, ny = neighbour_sets(X, k, n_threads), neighbour_sets(Y, k, n_threads)
    return float(np.mean([np.intersect1d(p, q).size for p, q in zip(nx, ny)]) / k)


def best_jaccard(labels_x, labels_y, n_clusters):
    """Mean over the clusters of labels_x of the best Jaccard index with a cluster of labels_y."""
    counts = np.zeros((n_clusters, n_clusters))
    np.add.at(counts, (labels_x, labels_y), 1.0)
    union = counts.sum(1, keepdims=True) + counts.sum(0, keepdims=True) - counts
    return float((counts / np.maximum(union, 1.0)).max(axis=1).mean())


def unit_rows(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def cka(K_a, K_b, perm):
    from minivec2vec.kernels import numba_kernels as _kernels

    return _kernels.qap_objective(K_a, K_b, perm) / (np.linalg.norm(K_a) * np.linalg.norm(K_b))


def trial(A, partners, B, W, n_clusters, qap_restarts, rng, n_threads):
    from minivec2vec.stages.anchors import centred_gram, solve_qap
    from minivec2vec.kernels.kmeans import kmeans

    def cluster(X):
        return kmeans(X, n_clusters, random_state=rng, max_iter=0, lloyd_passes=20,
                      n_threads=n_threads)[:2]

    C_a, labels_a = cluster(A)
    _, labels_a2 = cluster(A)
    _, labels_p = cluster(partners)
    C_b, _ = cluster(B)
    out = {"jac AA": best_jaccard(labels_a, labels_a2, n_clusters),
           "jac AB": best_jaccard(labels_a, labels_p, n_clusters)}
    # the same partition on both sides: A's clusters carried over by the true pairs
    C_p = np.stack([partners[labels_a == j].mean(axis=0) for j in range(n_clusters)])
    K_a = centred_gram(C_a)
    perm, score = solve_qap(K_a, centred_gram(C_p), qap_restarts, rng)
    out["same right"], out["same cka"] = float(np.mean(perm == np.arange(n_clusters))), score
    # independent partitions, judged against the best matching under the supervised map
    K_b = centred_gram(C_b)
    rows, cols = linear_sum_assignment(-(unit_rows(C_a @ W) @ unit_rows(C_b).T))
    best = np.empty(n_clusters, dtype=np.int64)
    best[rows] = cols
    perm, score = solve_qap(K_a, K_b, qap_restarts, rng)
    out["indep right"] = float(np.mean(perm == best))
    out["indep cka"], out["best cka"] = score, cka(K_a, K_b, best)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="minilm:wordllama,minilm:minilm-static,"
                                           "wordllama:minilm-static")
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--qap-restarts", type=int, default=30)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"anchor_diagnostics.py needs the real data in {DATA}", file=sys.stderr)
        return 2
    columns = ("jac AA", "jac AB", "same right", "same cka", "indep right", "indep cka",
               "best cka")
    print(f"{'A -> B':<28} {'knn':>5} " + " ".join(f"{c:>11}" for c in columns), flush=True)
    for pair in args.pairs.split(","):
        a, b = pair.split(":")
        A, partners, B, W = load_sample(a, b, args.rows, args.seed)
        overlap = knn_overlap(A, partners, 10, args.n_threads)
        rng = np.random.default_rng(args.seed)
        results = [trial(A, partners, B, W, args.clusters, args.qap_restarts, rng,
                         args.n_threads) for _ in range(args.trials)]
        means = {c: np.mean([r[c] for r in results]) for c in columns}
        print(f"{a + ' -> ' + b:<28} {overlap:>5.3f} "
              + " ".join(f"{means[c]:>11.3f}" for c in columns), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
