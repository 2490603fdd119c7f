"""Point-level QAP diagnostic (uses TRUE pairs): does the matching induced by the supervised
map W* score above the local optima that FAQ (Frank-Wolfe on max <K_A, P K_B P^T> over
permutations) finds from random starts? Kernels: centred linear Gram, or a centred symmetrised
k-NN graph. Results: docs/experiments.md, 2026-12-03.

    python experiments/point_qap.py 1500 linear 2      # rows per side, kernel, starts
    python experiments/point_qap.py 1500 knn10 2
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from start_diagnostics import load, score  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from minivec2vec.kernels.procrustes import procrustes  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
kind = sys.argv[2] if len(sys.argv) > 2 else "linear"
starts = int(sys.argv[3]) if len(sys.argv) > 3 else 3
d = load("minilm", "e5")
rng = np.random.default_rng(0)
A = d["A"][rng.choice(len(d["A"]), n, replace=False)].astype(np.float64)
B = d["B"][rng.choice(len(d["B"]), n, replace=False)].astype(np.float64)

def kernel(X):
    K = X @ X.T
    if kind == "linear":
        J = np.eye(n) - 1.0 / n
        K = J @ K @ J
    elif kind.startswith("knn"):
        k = int(kind[3:])
        np.fill_diagonal(K, -np.inf)
        idx = np.argpartition(-K, k, axis=1)[:, :k]
        G = np.zeros((n, n)); G[np.arange(n)[:, None], idx] = 1
        K = G + G.T
        K -= K.mean(0, keepdims=True); K -= K.mean(1, keepdims=True)
    return K / np.linalg.norm(K)

KA, KB = kernel(A), kernel(B)
def obj(perm):  # P maps A row i -> B row perm[i]
    return float(np.sum(KA * KB[np.ix_(perm, perm)]))
Ws = d["Wstar"]
_, truth = linear_sum_assignment(-(A @ Ws) @ B.T)
print(f"n={n} kernel={kind}: objective at the W* matching {obj(truth):.5f}", flush=True)
rperm = rng.permutation(n); print(f"random permutation {obj(rperm):.5f}", flush=True)

def faq(P, iters=40):
    for it in range(iters):
        G = KA @ P @ KB                      # gradient / 2 of <KA, P KB P^T>
        _, col = linear_sum_assignment(-G)
        Q = np.zeros((n, n)); Q[np.arange(n), col] = 1
        D = Q - P
        a = np.sum(KA * (D @ KB @ D.T)); b = 2 * np.sum(KA * (P @ KB @ D.T))
        # f(P + t D) = f(P) + b t + a t^2 ; maximise on [0, 1]
        if a < 0:
            t = min(1.0, max(0.0, -b / (2 * a)))
        else:
            t = 1.0 if a + b > 0 else 0.0
        if t == 0:
            break
        P = P + t * D
    _, col = linear_sum_assignment(-P)
    return col

for s in range(starts):
    t0 = time.time()
    R = rng.random((n, n))
    for _ in range(20):
        R /= R.sum(1, keepdims=True); R /= R.sum(0, keepdims=True)
    P0 = 0.5 * np.full((n, n), 1.0 / n) + 0.5 * R
    perm = faq(P0)
    W = procrustes(A.T @ B[perm])
    agree_frac = float(np.mean(perm == truth))
    t1, mr, ag = score(W, d)
    print(f"start {s}: objective {obj(perm):.5f}, same as W* matching {agree_frac:.3f}, "
          f"map top-1 {t1:.3f} rank {mr:.0f} agreement {ag:.3f} ({time.time()-t0:.0f} s)", flush=True)
