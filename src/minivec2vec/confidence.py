"""Confidence of a fitted alignment, computed without any pairs.

Map a sample of A into B and pair it with a sample of B by CSLS mutual nearest neighbours (rows
that choose each other under the hubness-corrected similarity). When W is right, the mapped A
rows land among B rows of similar texts and the mutual pairs are close; when W is wrong they land
in the gaps and even the best mutual pairs are far apart. The raw mean cosine depends on how
dense the space is, so it is divided by the same statistic between two disjoint samples of B
itself: the closeness a perfect map of identically distributed data would reach.

    confidence = mean cos(mutual pairs of mapped A vs B1) / mean cos(mutual pairs of B2 vs B1)

Measured on ../shared/data (docs/experiments.md): 0.34-0.45 for random maps, 1.02-1.03 for
recovered hidden rotations. Between genuinely different models even the supervised map scores
only 0.68-0.80 and a failed fit polished by the refinement 0.68-0.76, so the score orders maps
of one pair (what ``n_restarts`` needs) but cannot confirm a cross-model alignment: with
``CONFIDENCE_THRESHOLD`` = 0.80 such fits always warn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .knn import csls_nearest, normalise_rows

CONFIDENCE_THRESHOLD = 0.80


class AlignmentWarning(UserWarning):
    """The unpaired confidence score says the fitted alignment is doubtful."""


@dataclass
class ScoringSample:
    """Fixed rows used to score every candidate W of one fit the same way."""
    rows_a: np.ndarray
    rows_b: np.ndarray       # B1: the rows mapped A is paired with
    reference_b: np.ndarray  # B2: disjoint from B1, gives the self-similarity reference
    reference: float         # mean cosine of CSLS mutual pairs of B2 vs B1


def mutual_pair_cosine(mapped_a, rows_b, csls_k, n_threads=None):
    """Mean cosine of the CSLS mutual nearest-neighbour pairs (0 when there are none)."""
    forward, backward = csls_nearest(mapped_a, rows_b, csls_k, n_threads)
    mutual = np.flatnonzero(backward[forward] == np.arange(forward.shape[0]))
    if mutual.size == 0:
        return 0.0
    return float(np.einsum("ij,ij->i", mapped_a[mutual], rows_b[forward[mutual]]).mean())


def scoring_sample(X_a, X_b, *, sample_size, csls_k, rng, n_threads=None):
    """Draw the scoring rows (centred unit-norm float32 inputs) and the B-vs-B reference."""
    # the same number of rows in all three sets: the mutual-pair cosine grows with the number
    # of candidates, so unequal sizes would bias the ratio
    n = min(sample_size, X_a.shape[0], X_b.shape[0] // 2)
    order_b = rng.permutation(X_b.shape[0])
    rows_a = X_a[np.sort(rng.choice(X_a.shape[0], n, replace=False))]
    rows_b = X_b[np.sort(order_b[:n])]
    reference_b = X_b[np.sort(order_b[n:2 * n])]
    reference = mutual_pair_cosine(reference_b, rows_b, csls_k, n_threads)
    return ScoringSample(rows_a, rows_b, reference_b, reference)


def restart_agreement(maps, rows_a):
    """Mean over pairs of restarts of the mean cosine between the same A rows mapped by each.

    Restarts that found the same alignment map a row to nearly the same place; failed restarts
    land in unrelated local optima, whose images are close to orthogonal. NaN for one map.
    """
    if len(maps) < 2:
        return float("nan")
    mapped = [normalise_rows(rows_a @ np.asarray(W, dtype=np.float32)) for W in maps]
    total, pairs = 0.0, 0
    for i in range(len(mapped)):
        for j in range(i + 1, len(mapped)):
            total += float(np.einsum("ij,ij->i", mapped[i], mapped[j]).mean())
            pairs += 1
    return total / pairs


def alignment_confidence(W, sample: ScoringSample, csls_k, n_threads=None):
    """The confidence score of W on a :class:`ScoringSample` (see the module docstring)."""
    mapped = normalise_rows(sample.rows_a @ np.asarray(W, dtype=np.float32))
    raw = mutual_pair_cosine(mapped, sample.rows_b, csls_k, n_threads)
    return raw / sample.reference if sample.reference > 0 else 0.0
