"""Confidence of a fitted alignment, computed without any pairs: two scores and the verdict.

``confidence_``: map a sample of A into B and pair it with a sample of B by CSLS mutual nearest
neighbours (rows that choose each other under the hubness-corrected similarity). When W is
right, the mapped A rows land among B rows of similar texts and the mutual pairs are close; when
W is wrong they land in the gaps. The raw mean cosine depends on how dense the space is, so it
is divided by the same statistic between two disjoint samples of B itself:

    confidence = mean cos(mutual pairs of mapped A vs B1) / mean cos(mutual pairs of B2 vs B1)

Measured on ../shared/data (docs/experiments.md): 0.34-0.45 for random maps, 1.02-1.03 for
recovered hidden rotations. Between genuinely different models even the supervised map scores
only 0.68-0.80, and a failed fit polished by the refinement 0.68-0.76: the score orders maps of
one pair (what ``n_restarts`` selects on) but cannot say whether a cross-model fit worked.

``restart_agreement_`` (two or more restarts run): how closely an independent restart confirms
the kept map, the mean cosine between the images of the same A rows under the kept map and
under the other restart that agrees with it most (with two restarts: the agreement of the
two). Independent restarts that found the alignment map a row to nearly the same place;
failed restarts land in unrelated local optima. This is the score that separates good from
failed fits across model pairs; ``confidence_`` ranks failed minilm-static fits above good
wordllama -> minilm ones.

Measured on the restarts of 40 fits at 10,000 rows per side (docs/reliability.md, 2026-11-27;
top-1 of each restart's map judged with the pairs): the 120 pairs among four restarts of 20
failed minilm -> minilm-static fits agree 0.05-0.33 (3 above 0.30). On wordllama -> minilm, two
good restarts (top-1 >= 0.40) agree 0.55-0.77, a good and a failed one (top-1 < 0.05)
0.22-0.27, and partly good ones (in between) 0.27-0.57. The threshold, 0.40, sits above every
agreement of failed restarts seen, with room for a fit that escalates: there the kept map is
compared with every other restart, so chance agreement gets more tries.

``return_agreement_`` (every restart; ``restart_returns_`` holds each one's): does the
refinement come back to the map once the map is turned far away? The map W is turned by a
random rotation T (``RETURN_TURN``: the images of W and T W agree ~0.4), and the first
``RETURN_PASSES`` passes of refine-mutual run from W and from T W on the same samples; the
score is the agreement of the two results. A map that found the alignment sits in a wide basin
(the supervised map turned to agreement 0.39 is refined back to the same fixed point), a failed
map in a narrow one. Measured on ../shared/data at full size (30,904 rows per side,
docs/experiments.md, 2026-12-03): maps that found the alignment 0.78 (minilm ->
multilingual-e5, two maps) and 0.85 (minilm -> wordllama, two fits); failed maps 0.53-0.56
(minilm -> multilingual-e5, four), 0.54 (minilm -> minilm-static), 0.41 (wordllama ->
multilingual-e5) and 0.62 (multilingual-e5 -> wordllama). The threshold, 0.70, sits between.
Unlike the restart agreement it needs one restart that found the map, not two, so a pair that
one restart in three aligns is confirmed without running six. On small inputs the basins of good
and failed maps overlap (the hidden rotation at 2,000 rows per side: 0.57-0.59; a synthetic
24-d pair at 1,000 rows: good maps 0.55-0.99, a failed one 0.69), so the check runs only from
``RETURN_MIN_ROWS`` rows per side, and below it the restart agreement decides alone.

``known_pairs_top1_`` (a fit given ``known_pairs``): held-out top-1 on the known pairs. They are
cut in two halves; the fit after the start runs again from each half's Procrustes map, and the
other half's A rows are retrieved among their own B partners plus ``KNOWN_PAIRS_DISTRACTORS``
unpaired B rows (so that a failed map cannot be right by chance among a handful of rows). Pairs
that chose the start would flatter it: on the shipped sample, minilm -> wordllama, a map
started from 50 pairs keeps fitting them (1.00 among themselves) while it maps the test pool at
top-1 0.13 (held out: 0.00). The check runs on half the pairs, so it is conservative: it warns for some maps
that the whole set of pairs makes good.

The verdict (:func:`doubtful`): with known pairs, ``known_pairs_top1_`` below
``KNOWN_PAIRS_THRESHOLD``; otherwise, ``return_agreement_`` below ``RETURN_THRESHOLD`` and
``restart_agreement_`` below ``AGREEMENT_THRESHOLD`` (or absent); with neither score (map
files that do not store them), confidence below ``CONFIDENCE_THRESHOLD``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import expm

from ..kernels.knn import csls_nearest, normalise_rows
from ..exceptions import AlignmentWarning  # noqa: F401  (re-exported: raised from here before 0.2)

CONFIDENCE_THRESHOLD = 0.80
AGREEMENT_THRESHOLD = 0.40
KNOWN_PAIRS_THRESHOLD = 0.20
KNOWN_PAIRS_DISTRACTORS = 1000
RETURN_THRESHOLD = 0.70
RETURN_TURN = 2.5      # the turn of the return check: agreement ~0.4 between W and T W
RETURN_PASSES = 6      # refine-mutual passes of each of the return check's two runs
RETURN_MIN_ROWS = 30_000   # rows per side from which the check runs (where it was measured)


@dataclass
class ScoringSample:
    """Fixed rows used to score every candidate W of one fit the same way."""
    rows_a: np.ndarray
    rows_b: np.ndarray       # B1: the rows mapped A is paired with
    reference: float         # mean cosine of CSLS mutual pairs of B2 (B rows disjoint from
                             # B1) vs B1: the self-similarity reference


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
    return ScoringSample(rows_a, rows_b, reference)


def restart_agreement(maps, rows_a, kept):
    """How closely another restart confirms ``maps[kept]`` (see the module docstring): the
    largest mean cosine between the rows of ``rows_a`` mapped by it and by any other of
    ``maps``. NaN for a single map."""
    if len(maps) < 2:
        return float("nan")
    return max(map_agreement(maps[kept], W, rows_a)
               for index, W in enumerate(maps) if index != kept)


def agreement_matrix(maps, rows_a):
    """:func:`map_agreement` of every pair of ``maps`` on the rows of ``rows_a``: a symmetric
    float64 matrix with 1 on the diagonal. Entry (i, j) equals ``map_agreement(maps[i],
    maps[j], rows_a)`` to the bit, so ``restart_agreement(maps, rows_a, kept)`` is the largest
    entry of row ``kept`` off the diagonal."""
    images = [normalise_rows(rows_a @ np.asarray(W, dtype=np.float32)) for W in maps]
    matrix = np.eye(len(maps))
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            matrix[i, j] = matrix[j, i] = float(
                np.einsum("ij,ij->i", images[i], images[j]).mean())
    return matrix


def random_turn(d, angle, rng):
    """A random rotation of R^d by ``angle``: exp(angle S) for a random skew-symmetric S of
    spectral norm 1 (its planes turn by angles spread over [0, angle])."""
    S = rng.standard_normal((d, d))
    S = S - S.T
    return expm(angle * (S / np.linalg.norm(S, 2)))


def return_agreement(W, rows_a, refine, rng):
    """How surely the refinement comes back to W after W is turned far off (see the module
    docstring): the mean cosine between the rows of ``rows_a`` mapped by ``refine(W)`` and by
    ``refine(T W)``, T a :func:`random_turn` by ``RETURN_TURN``. ``refine(W, rng)`` is called
    twice with generators of the same seed, so the two runs see the same samples and differ
    only in where they start."""
    turn = random_turn(W.shape[0], RETURN_TURN, rng)
    seed = int(rng.integers(0, 2**63 - 1))
    here = refine(W, np.random.default_rng(seed))
    back = refine(turn @ W, np.random.default_rng(seed))
    return map_agreement(here, back, rows_a)


def map_agreement(W_1, W_2, rows_a):
    """Mean cosine between the rows of ``rows_a`` mapped by W_1 and by W_2."""
    image_1 = normalise_rows(rows_a @ np.asarray(W_1, dtype=np.float32))
    image_2 = normalise_rows(rows_a @ np.asarray(W_2, dtype=np.float32))
    return float(np.einsum("ij,ij->i", image_1, image_2).mean())


def alignment_confidence(W, sample: ScoringSample, csls_k, n_threads=None):
    """The confidence score of W on a :class:`ScoringSample` (see the module docstring)."""
    mapped = normalise_rows(sample.rows_a @ np.asarray(W, dtype=np.float32))
    raw = mutual_pair_cosine(mapped, sample.rows_b, csls_k, n_threads)
    return raw / sample.reference if sample.reference > 0 else 0.0


def known_pairs_top1(W, pairs_a, pairs_b, distractors_b=None):
    """Fraction of the rows of ``pairs_a`` whose image under W is nearest (cosine) to the same
    row of ``pairs_b`` among all rows of ``pairs_b`` and ``distractors_b`` (all centred, with
    unit rows: the scale of an image does not change which B row is nearest to it)."""
    candidates = pairs_b if distractors_b is None else np.concatenate([pairs_b, distractors_b])
    scores = (pairs_a @ W.astype(np.float32)) @ candidates.T
    return float(np.mean(np.argmax(scores, axis=1) == np.arange(pairs_a.shape[0])))


def doubtful(confidence, agreement, known_top1=float("nan"), returned=float("nan")):
    """Why the fit is doubtful (a sentence), or None when the scores raise no doubt."""
    if not np.isnan(known_top1):
        if known_top1 < KNOWN_PAIRS_THRESHOLD:
            return (f"fits started from half of the known pairs retrieve only {known_top1:.0%} "
                    f"of the other half (known_pairs_top1_ below {KNOWN_PAIRS_THRESHOLD}): give "
                    "more known pairs")
        return None
    if returned >= RETURN_THRESHOLD or agreement >= AGREEMENT_THRESHOLD:   # NaN: False
        return None
    reasons = []
    if not np.isnan(returned):
        reasons.append(f"the refinement does not come back to the map once it is turned away "
                       f"(return_agreement_ {returned:.3f} is below {RETURN_THRESHOLD})")
    if not np.isnan(agreement):
        reasons.append(f"independent restarts disagree (restart_agreement_ {agreement:.3f} is "
                       f"below {AGREEMENT_THRESHOLD}): they found different maps, so at most "
                       "one is right")
    if reasons:
        return ("; ".join(reasons) + ": the two models may be too different for an unpaired "
                "alignment, or the input too small")
    if confidence < CONFIDENCE_THRESHOLD:
        return (f"confidence {confidence:.3f} is below {CONFIDENCE_THRESHOLD} (mapped A rows "
                "do not land among B rows; between different models even a right map scores "
                "below it): fit with n_restarts >= 2 to check by restart agreement")
    return None
