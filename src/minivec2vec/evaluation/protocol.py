"""The evaluation protocol of mini-vec2vec on row-aligned embeddings of the same texts.

The last ``pool`` rows (:data:`TEST_POOL` = 8,192 by default) are the paired test set; the rest is cut into two disjoint halves, A
trains on the first, B on the second (no text on both sides). B's coordinates may be rotated by
a random orthogonal matrix so that no shared basis can help. The supervised ceiling is
Procrustes on the TRUE pairs of A's training rows, evaluated the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import special_ortho_group

from ..exceptions import ShapeError, TooFewRowsError
from .metrics import TEST_POOL, evaluate  # noqa: F401  (TEST_POOL: the protocol's pool)
from ..kernels.rows import centre_normalise, column_mean
from ..kernels.procrustes import procrustes


@dataclass
class Split:
    train_a: np.ndarray
    train_b: np.ndarray
    test_a: np.ndarray
    test_b: np.ndarray
    paired_train_b: np.ndarray   # B rows of the same texts as train_a (for the ceiling only)


def random_rotation(d, seed):
    """A random d x d orthogonal matrix (Haar), float32."""
    return special_ortho_group.rvs(d, random_state=seed).astype(np.float32)


def split(emb_a, emb_b, pool=TEST_POOL, rotate_b=None):
    """Cut row-aligned embeddings per the protocol; rotate B's coordinates by ``rotate_b``."""
    n = emb_a.shape[0]
    if emb_b.shape[0] != n:
        raise ShapeError("emb_a and emb_b must be row-aligned (same number of rows)")
    if n <= pool + 2:
        raise TooFewRowsError(f"need more than pool + 2 = {pool + 2} rows, got {n}")
    half = (n - pool) // 2
    b = emb_b if rotate_b is None else (np.asarray(emb_b, dtype=np.float32) @ rotate_b)
    return Split(train_a=emb_a[:half], train_b=b[half:2 * half], test_a=emb_a[n - pool:],
                 test_b=b[n - pool:], paired_train_b=b[:half])


def supervised_ceiling(s: Split, pool=None, csls=False):
    """Procrustes on the true pairs of A's training rows, evaluated on the test pool."""
    A = _centre_norm(s.train_a, s.train_a)
    B = _centre_norm(s.paired_train_b, s.paired_train_b)
    W = procrustes(A.T.astype(np.float64) @ B.astype(np.float64))
    mapped = _centre_norm(s.test_a, s.train_a) @ W.astype(np.float32)
    return evaluate(mapped, _centre_norm(s.test_b, s.paired_train_b), pool=pool, csls=csls)


def evaluate_model(model, s: Split, pool=None, csls=False):
    """Map A's test rows and rank B's test rows (centred with B's training mean)."""
    targets = np.asarray(s.test_b, dtype=np.float32) - model.mean_b_.astype(np.float32)
    return evaluate(model.transform(s.test_a), targets, pool=pool, csls=csls)


def _centre_norm(X, ref):
    """X centred with the mean of ``ref`` and L2-normalised (the model's own preprocessing)."""
    return centre_normalise(X, column_mean(ref), "X")
