"""Retrieval evaluation of an alignment (the protocol of mini-vec2vec).

Row i of ``mapped`` (A vectors mapped into B-space) and row i of ``targets`` (B vectors) embed
the same text. Every mapped row ranks all target rows of the pool by cosine (or CSLS); the true
partner's 1-based rank gives top-1 accuracy and mean rank.
"""
from __future__ import annotations

import numpy as np

from ._errors import ShapeError
from ._validation import check_embeddings, check_positive_int
from .knn import _knn, normalise_rows


def evaluate(mapped, targets, pool=8192, csls=False, csls_k=10, n_threads=None):
    """Top-1 accuracy, mean rank and mean paired cosine of paired rows.

    Parameters
    ----------
    mapped : ndarray of shape (n, d)
    targets : ndarray of shape (n, d), row-aligned with ``mapped``
    pool : int or None
        The first ``pool`` pairs form the retrieval pool (all pairs if None or n < pool).
    csls : bool
        Rank by CSLS (2 cos - r_target - r_query, r = mean similarity to k nearest
        neighbours in the other set) instead of cosine, to counter hubness.

    Returns
    -------
    dict with ``top1``, ``mean_rank`` (1-based), ``mean_cos``, ``pool`` and ``metric``.
    """
    mapped = check_embeddings(mapped, "mapped")
    targets = check_embeddings(targets, "targets", n_features=mapped.shape[1])
    if targets.shape[0] != mapped.shape[0]:
        raise ShapeError(f"mapped has {mapped.shape[0]} rows but targets has {targets.shape[0]}: "
                         "rows must be paired")
    n = mapped.shape[0] if pool is None else min(check_positive_int(pool, "pool"), mapped.shape[0])
    Q = normalise_rows(np.array(mapped[:n], dtype=np.float32))
    T = normalise_rows(np.array(targets[:n], dtype=np.float32))
    true_cos = np.einsum("ij,ij->i", Q, T)
    penalty = np.zeros(n, dtype=np.float32)
    if csls:
        k = min(check_positive_int(csls_k, "csls_k"), n)
        r_t, _ = _knn(T, Q, k, metric="ip", n_threads=n_threads)
        penalty = r_t.mean(axis=1).astype(np.float32)
    ranks = np.empty(n, dtype=np.int64)
    block = 1024
    for start in range(0, n, block):
        stop = min(start + block, n)
        scores = Q[start:stop] @ T.T
        if csls:
            scores = 2.0 * scores - penalty[None, :]
        own = scores[np.arange(stop - start), np.arange(start, stop)]
        ranks[start:stop] = 1 + (scores > own[:, None]).sum(axis=1)
    return {"top1": float(np.mean(ranks == 1)), "mean_rank": float(ranks.mean()),
            "mean_cos": float(true_cos.mean()), "pool": int(n), "metric": "csls" if csls else "cosine"}
