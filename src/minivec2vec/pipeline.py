"""The fit pipeline: the stages in order on the sampled rows, centred and L2-normalised,
driven by one frozen :class:`FitSettings` (the estimator's parameters, the thread count, the
stage sizes of :func:`minivec2vec._runtime.sizing.stage_settings` and the memory plan).

Unpaired: ``n_restarts`` (+ up to ``extra_restarts``) restarts of stages 1-4
(:func:`initial_map`: anchors, pseudo-pairs, Procrustes, refine-1, refine-transport or
refine-assignment), each scored (from 30,000 rows per side by the return check, which also
runs once part-way through refine-assignment and can end it there); the kept map goes on to
:func:`refine` (refine-2, refine-mutual). From known pairs: their Procrustes map replaces the
restarts, refine-mutual runs alone, and :func:`cross_check` scores the fit on held-out halves
of the pairs. Last, the unpaired confidence. :func:`run` is the whole of it; the estimator
(:class:`minivec2vec.MiniVec2Vec`) prepares the rows and keeps what it returns.

Every random draw comes from the generator handed in, in a fixed order: the same seed gives
the same map, whatever the thread count.
"""
from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ._runtime.progress import logger, stage
from .kernels.procrustes import procrustes
from .kernels.rows import centre_normalise
from .stages.anchors import Anchors, match_anchors
from .stages.assignment import AssignmentClimb
from .stages.confidence import (AGREEMENT_THRESHOLD, KNOWN_PAIRS_DISTRACTORS, RETURN_MIN_ROWS,
                                RETURN_PASSES, RETURN_THRESHOLD, agreement_matrix,
                                alignment_confidence, known_pairs_top1, restart_agreement,
                                return_agreement, scoring_sample)
from .stages.pseudo_pairs import pseudo_pair_cross_covariance
from .stages.refine import refine_clusters, refine_matching, refine_mutual
from .stages.transport import refine_transport


# refine-assignment steps after which a restart's map that has not climbed is checked (the
# return check): a start already at a good fixed point stops there (docs/experiments.md,
# 2026-12-06: on a hidden rotation the stage otherwise runs all its steps)
ASSIGNMENT_CHECK_AFTER = 100


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """Everything the stages of one fit read: the estimator's parameters they use, the
    resolved thread count, the stage sizes scaled to the rows (``sizes``, the fit's
    ``stage_settings_``) and the memory plan of its kNN calls (``plan``)."""
    n_runs: int
    qap_restarts: int
    refine_iter: int
    alpha: float
    reproject: bool
    transport_rows: int
    mutual_iter: int
    n_restarts: int
    extra_restarts: int
    confidence_sample: int
    known_pairs_weight: float
    n_threads: int
    sizes: Mapping[str, int]
    plan: Mapping[str, int]

    @classmethod
    def from_params(cls, params, n_threads, sizes, plan):
        """The settings of a fit from the estimator's ``get_params()``, the resolved thread
        count, :func:`~minivec2vec._runtime.sizing.stage_settings` and the memory plan."""
        own = {f.name for f in dataclasses.fields(cls)} - {"n_threads", "sizes", "plan"}
        return cls(**{name: params[name] for name in own}, n_threads=n_threads,
                   sizes=MappingProxyType(dict(sizes)), plan=MappingProxyType(dict(plan)))


@dataclasses.dataclass
class FitResult:
    """What a fit found: the map W (float64 d_a x d_b), the kept restart's anchors, the
    unpaired confidence of W, and the restarts' maps and scores (empty / NaN for a fit started
    from known pairs) or the known pairs' held-out top-1 (NaN without them)."""
    W: np.ndarray
    anchors: Anchors
    confidence: float
    restart_confidences: list
    restart_returns: list
    restart_agreement: float
    return_agreement: float
    known_pairs_top1: float
    restart_maps: np.ndarray        # (n_restarts, d_a, d_b): each restart's map, in order
    restart_agreements: np.ndarray  # (n_restarts, n_restarts): agreement of every pair


def run(A, B, mean_a, mean_b, rng, settings, timings, known_pairs=None):
    """Every stage on the centred, L2-normalised float32 rows A and B (``mean_a`` and
    ``mean_b``, float64, centre the ``known_pairs`` the same way), drawing from ``rng``; each
    stage's seconds are summed into ``timings``. A :class:`FitResult`."""
    sizes, n_threads = settings.sizes, settings.n_threads
    if known_pairs is None:
        search = search_restarts(A, B, rng, settings, timings)
        W, anchors, rng, sample = search.W, search.anchors, search.rng, search.sample
    else:
        with stage(timings, "known_pairs", f"{known_pairs[0].shape[0]} pairs"):
            K_a = centre_normalise(known_pairs[0], mean_a, "known_pairs[0]")
            K_b = centre_normalise(known_pairs[1], mean_b, "known_pairs[1]")
            known_cross_covariance = K_a.T.astype(np.float64) @ K_b.astype(np.float64)
            W = procrustes(known_cross_covariance)
        anchors = Anchors(np.empty((0, A.shape[1]), np.float32),
                          np.empty((0, B.shape[1]), np.float32), np.empty(0))
        search, sample = RestartSearch(), None

    W = refine(W, A, B, rng, settings, timings,
               None if known_pairs is None else known_cross_covariance)
    if known_pairs is not None:
        with stage(timings, "known_pairs_check", "two held-out halves"):
            top1 = cross_check(K_a, K_b, A, B, rng, settings)
    else:
        top1 = float("nan")

    with stage(timings, "confidence", "the unpaired self-check"):
        if sample is None:
            sample = scoring_sample(A, B, sample_size=settings.confidence_sample,
                                    csls_k=sizes["csls_k"], rng=rng, n_threads=n_threads)
        confidence = alignment_confidence(W, sample, sizes["csls_k"], n_threads)
    restart_maps = (np.stack(search.maps) if search.maps
                    else np.empty((0, A.shape[1], B.shape[1])))
    return FitResult(W, anchors, confidence, search.confidences, search.returns,
                     search.agreement, search.kept_return, top1, restart_maps,
                     search.agreements)


@dataclasses.dataclass
class RestartSearch:
    """What the restarts found: the kept restart's map, anchors and generator, the scoring
    sample, every restart's confidence and return agreement, the kept map's restart
    agreement and return agreement, every restart's map and the agreement of every pair of
    them on the scoring sample (empty / NaN / None for a fit started from known pairs)."""
    W: np.ndarray = None
    anchors: Anchors = None
    rng: np.random.Generator = None
    sample: object = None
    confidences: list = dataclasses.field(default_factory=list)
    returns: list = dataclasses.field(default_factory=list)
    agreement: float = float("nan")
    kept_return: float = float("nan")
    maps: list = dataclasses.field(default_factory=list)
    agreements: np.ndarray = dataclasses.field(default_factory=lambda: np.empty((0, 0)))


def refine(W, A, B, rng, settings, timings, known_cross_covariance=None):
    """The stages after the starting map: refine-2, then refine-mutual. A fit started from
    known pairs (their ``known_cross_covariance``) runs refine-mutual alone, the pairs
    weighted into every pass."""
    sizes, plan, n_threads = settings.sizes, settings.plan, settings.n_threads
    seeded = known_cross_covariance is not None
    prior = settings.known_pairs_weight * known_cross_covariance if seeded else None
    with stage(timings, "refine_clusters", f"{sizes['refine_clusters']} clusters"):
        if sizes["refine_clusters"] and not seeded:
            W = refine_clusters(W, A, B, n_clusters=sizes["refine_clusters"],
                                alpha=settings.alpha, reproject=settings.reproject, rng=rng,
                                n_threads=n_threads)
    with stage(timings, "refine_mutual",
               f"{settings.mutual_iter} passes, {sizes['mutual_sample']} -> "
               f"{sizes['mutual_final_sample']} rows per side",
               steps=settings.mutual_iter) as on_step:
        W = refine_mutual(W, A, B, n_iter=settings.mutual_iter,
                          sample_size=sizes["mutual_sample"],
                          final_sample_size=sizes["mutual_final_sample"],
                          csls_k=sizes["csls_k"], rng=rng, n_threads=n_threads,
                          memory_limit=plan["knn_mutual"], prior_cross_covariance=prior,
                          on_step=on_step)
    return W


def cross_check(K_a, K_b, A, B, rng, settings):
    """``known_pairs_top1_``: the known pairs cut in two halves (seeded); the fit after the
    start runs from each half's Procrustes map (with that half only) and is scored on
    the OTHER half, its A rows retrieved among its B rows and KNOWN_PAIRS_DISTRACTORS
    unpaired B rows; the mean of the two (see :mod:`minivec2vec.stages.confidence`)."""
    order = rng.permutation(K_a.shape[0])
    halves = np.array_split(order, 2)
    distractors = B[np.sort(rng.choice(B.shape[0], min(KNOWN_PAIRS_DISTRACTORS, B.shape[0]),
                                       replace=False))]
    scores = []
    for start_rows, held_out in (halves, halves[::-1]):
        M = K_a[start_rows].T.astype(np.float64) @ K_b[start_rows].astype(np.float64)
        W = refine(procrustes(M), A, B, rng, settings, {}, M)
        scores.append(known_pairs_top1(W, K_a[held_out], K_b[held_out], distractors))
    return float(np.mean(scores))


def search_restarts(A, B, rng, settings, timings):
    """Stages 1-4 in ``n_restarts`` independent restarts, then up to ``extra_restarts``
    more, one at a time, while the kept map is not confirmed (a :class:`RestartSearch`)."""
    sizes, plan, n_threads = settings.sizes, settings.plan, settings.n_threads
    seeds = rng.integers(0, 2**63 - 1, size=settings.n_restarts + 1)
    sample = scoring_sample(A, B, sample_size=settings.confidence_sample,
                            csls_k=sizes["csls_k"], rng=np.random.default_rng(seeds[0]),
                            n_threads=n_threads)
    restarts = []                   # (W, anchors, rng) of each restart, in order
    confidences, returns = [], []
    # the return check is calibrated at full size only: on small inputs good maps have
    # narrow basins too (see confidence.py), and the restart agreement decides alone
    check_returns = min(A.shape[0], B.shape[0]) >= RETURN_MIN_ROWS

    def check_refine(W, check_rng, on_step):
        # the return check's refinement: the first passes of refine-mutual's schedule
        return refine_mutual(W, A, B, n_iter=RETURN_PASSES, sample_size=sizes["mutual_sample"],
                             final_sample_size=min(2 * sizes["mutual_sample"],
                                                   sizes["mutual_final_sample"]),
                             csls_k=sizes["csls_k"], rng=check_rng, n_threads=n_threads,
                             memory_limit=plan["knn_mutual"], on_step=on_step)

    def check_return(W, check_rng):
        with stage(timings, "return_check", f"2 x {RETURN_PASSES} refine-mutual passes",
                   steps=2 * RETURN_PASSES) as on_step:
            return return_agreement(W, sample.rows_a,
                                    lambda W0, g: check_refine(W0, g, on_step), check_rng)

    def run_restart(seed):
        number = len(restarts) + 1
        restart_rng = np.random.default_rng(seed)
        logger.info("restart %d: started", number)
        early = []      # the return check run part-way through refine-assignment, if it ran

        def confirm(W):
            # its own generator (from the restart's seed): the restart's stream, and so every
            # map that is not confirmed here, stays as it would be without this check
            early.append(check_return(W, np.random.default_rng([int(seed), 1])))
            logger.info("restart %d: return agreement %.3f after %d refine-assignment steps",
                        number, early[-1], ASSIGNMENT_CHECK_AFTER)
            return early[-1] >= RETURN_THRESHOLD

        W, anchors = initial_map(A, B, restart_rng, settings, timings,
                                 confirm if check_returns else None)
        confirmed_early = bool(early) and early[-1] >= RETURN_THRESHOLD
        restarts.append((W, anchors, restart_rng))
        confidences.append(alignment_confidence(W, sample, sizes["csls_k"], n_threads))
        logger.info("restart %d: confidence %.3f", number, confidences[-1])
        if check_returns:
            returns.append(early[-1] if confirmed_early else check_return(W, restart_rng))
            logger.info("restart %d: return agreement %.3f", number, returns[-1])

    def kept():
        # the best-scoring confirmed restart, else the best-scoring one (first of equals)
        confirmed = [i for i, r in enumerate(returns) if r >= RETURN_THRESHOLD]
        candidates = confirmed or range(len(restarts))
        return max(candidates, key=lambda i: (confidences[i], -i))

    def kept_agreement():           # how closely another restart confirms the kept map
        return restart_agreement([W for W, _, _ in restarts], sample.rows_a, kept=kept())

    def confirmed():
        return ((check_returns and returns[kept()] >= RETURN_THRESHOLD)
                or (len(restarts) > 1 and kept_agreement() >= AGREEMENT_THRESHOLD))

    for seed in seeds[1:]:
        run_restart(seed)
    # the kept map not confirmed: more chances, one at a time until it is
    for seed in rng.integers(0, 2**63 - 1, size=settings.extra_restarts):
        if confirmed():
            break
        logger.info("the kept map is not confirmed: one more restart")
        run_restart(seed)
    W, anchors, restart_rng = restarts[kept()]
    maps = [W_restart for W_restart, _, _ in restarts]
    return RestartSearch(W, anchors, restart_rng, sample, confidences, returns,
                         kept_agreement(),
                         returns[kept()] if check_returns else float("nan"),
                         maps, agreement_matrix(maps, sample.rows_a))


def initial_map(A, B, rng, settings, timings, confirm=None):
    """Stages 1-4 (anchors, pseudo-pairs, Procrustes, refine-1, then refine-transport on
    small inputs or refine-assignment on large ones): one restart. Returns the map and the
    anchors.

    ``confirm`` (optional, W -> bool): called once, after ``ASSIGNMENT_CHECK_AFTER``
    refine-assignment steps, if the stage has not stopped by itself by then; True ends the
    stage there. A start that is already at a good fixed point (a hidden rotation,
    wordllama -> minilm) never climbs, so without the check it would run all
    ``assignment_iter`` steps for nothing; a start that has not climbed yet goes on exactly
    as it would have."""
    sizes, plan, n_threads = settings.sizes, settings.plan, settings.n_threads
    with stage(timings, "anchors", f"{settings.n_runs} runs of k-means with "
               f"{sizes['n_clusters']} clusters on {sizes['anchor_sample']} rows per side",
               steps=settings.n_runs) as on_step:
        anchors = match_anchors(A, B, n_runs=settings.n_runs, n_clusters=sizes["n_clusters"],
                                sample_size=sizes["anchor_sample"],
                                qap_restarts=settings.qap_restarts, rng=rng, n_threads=n_threads,
                                on_step=on_step)
    with stage(timings, "pseudo_pairs", f"{A.shape[0]} + {B.shape[0]} rows"):
        M = pseudo_pair_cross_covariance(A, B, anchors.anchors_a, anchors.anchors_b,
                                         sizes["n_neighbors"], n_threads,
                                         plan["knn_pseudo_pairs"])
        W = procrustes(M)
    with stage(timings, "refine_matching",
               f"{settings.refine_iter} steps of {sizes['refine_sample']} rows",
               steps=settings.refine_iter) as on_step:
        W = refine_matching(W, A, B, n_iter=settings.refine_iter,
                            sample_size=sizes["refine_sample"],
                            n_neighbors=sizes["refine_neighbors"], alpha=settings.alpha,
                            reproject=settings.reproject, rng=rng, n_threads=n_threads,
                            memory_limit=plan["knn_refine"], on_step=on_step)
    with stage(timings, "refine_transport", f"{sizes['transport_iter']} steps",
               steps=sizes["transport_iter"]) as on_step:
        W = refine_transport(W, A, B, n_iter=sizes["transport_iter"],
                             sample_size=settings.transport_rows, rng=rng, n_threads=n_threads,
                             on_step=on_step)
    n_steps = sizes["assignment_iter"]
    first = n_steps if confirm is None else min(n_steps, ASSIGNMENT_CHECK_AFTER)
    climb = AssignmentClimb(W, A, B, sample_size=sizes["assignment_rows"], rng=rng)
    with stage(timings, "refine_assignment", f"{first} of {n_steps} steps of "
               f"{sizes['assignment_rows']}-row batches", steps=first) as on_step:
        climb.run(first, n_threads=n_threads, on_step=on_step)
    if not (climb.levelled or climb.steps == n_steps or confirm(climb.W)):
        with stage(timings, "refine_assignment", f"the other {n_steps - climb.steps} steps",
                   steps=n_steps - climb.steps) as on_step:
            climb.run(n_steps - climb.steps, n_threads=n_threads, on_step=on_step)
    return climb.W, anchors
