"""The estimator: MiniVec2Vec checks its parameters, reads and samples the inputs, hands the rows
to the pipeline (:mod:`minivec2vec.pipeline`), and holds, applies, saves and loads the map."""
from __future__ import annotations

import time
import warnings

import numpy as np

from . import pipeline
from .distributed import is_dask_array
from .exceptions import (AlignmentWarning, DimensionMismatchError, InvalidParameterError,
                         MapFileError, NotFittedError)
from .io import mapfile as _mapfile
from .io.sources import ArraySource, open_source, scan
from .kernels.rows import centre_normalise, map_rows, mean_centred_norm, sample_indices
from ._runtime.memory import chunk_rows, plan_fit, working_budget
from ._runtime.parameters import PARAMETER_NAMES, PARAMETERS, check_params
from ._runtime.progress import logger, progress_bar, stage_log_to_stderr
from ._runtime.sizing import check_enough_rows, stage_settings
from ._runtime.threads import resolve_n_threads, single_threaded_blas
from ._runtime.validation import check_known_pairs, check_random_state
from .stages.confidence import doubtful


# fewer known pairs than this cannot start a fit on real data (10 failed on both pairs tried)
MIN_KNOWN_PAIRS = 10


class MiniVec2Vec:
    """Unsupervised linear alignment of embedding space A onto space B (mini-vec2vec).

    Learns a (semi-)orthogonal W (d_a x d_b) from UNPAIRED samples of both spaces so that
    ``normalise(x_a - mean_a_) @ W`` lands next to the B embedding of the same text.

    Parameters (reference defaults of the paper's notebook)
    ----------
    n_runs : int, default 30
        Anchor-matching runs (s); each contributes ``n_clusters`` anchor pairs.
    n_clusters : int, default 20
        Clusters per anchor run (c).
    anchor_sample : int, default 10000
        Rows drawn per side for each anchor run.
    qap_restarts : int, default 30
        Random 2-opt starts of the quadratic assignment per run (best kept).
    n_neighbors : int, default 50
        k of the pseudo-pairs from relative representations.
    refine_iter : int, default 100
        Refine-1 iterations (T).
    refine_sample : int, default 1000
        Rows of A sampled per refine-1 iteration (n_s).
    refine_neighbors : int, default 50
        k' of refine-1.
    alpha : float, default 0.5
        Smoothing: W <- (1 - alpha) W + alpha W_new.
    transport_iter : int, default 200
        Iterations of refine-transport (annealed Wasserstein-Procrustes, not in the paper), run
        after refine-1 of every restart on small inputs only (see ``transport_rows``); 0 skips
        it. On 1,000 rows per side it completes the partial maps the nearest-neighbour
        refinements stop at (see :mod:`minivec2vec.stages.transport`).
    transport_rows : int, default 1500
        Refine-transport runs when the smaller side has at most this many rows, on all of
        them; each of its iterations holds a ``transport_rows`` x ``transport_rows`` float32
        plan, and its cost grows with the square.
    assignment_iter : int, default 1000
        Steps of refine-assignment (Wasserstein-Procrustes with exact one-to-one assignments
        on random batches, not in the paper), run after refine-1 of every restart on inputs
        of at least 10,000 rows per side; 0 skips it. It climbs from starts too weak for the
        nearest-neighbour refinements (see :mod:`minivec2vec.stages.assignment`), and stops
        early once the climb has levelled off or (from 30,000 rows per side) once the return
        check run after 100 steps confirms the map. From weak starts the climb's first phase is a
        slow drift of 150 to more than 500 steps; a restart that does not climb runs them
        all (~0.08-0.12 s a step on 2 threads with 2,000-row batches).
    assignment_rows : int, default 2000
        Rows per side of each refine-assignment batch (two batches per step); each batch holds
        an ``assignment_rows`` x ``assignment_rows`` score matrix. Below ~2,000 the batches
        are too noisy to climb.
    refine_clusters : int, default 500
        Clusters of refine-2 (c'); 0 skips refine-2.
    mutual_iter : int, default 12
        Iterations of refine-mutual, run last: Procrustes on CSLS mutual nearest neighbours of
        fresh subsamples (not in the paper; 0 skips it and gives the paper's pipeline).
    mutual_sample : int, default 10000
        Rows per side sampled for each of the first half of the refine-mutual iterations.
    mutual_final_sample : int, default 30000
        Rows per side of the last refine-mutual iteration: the second half of the iterations
        grow their sample geometrically from ``mutual_sample`` to this (denser samples give
        closer pairs: top-1 0.59 -> 0.66 on minilm -> wordllama). Equal to ``mutual_sample``
        keeps every iteration at that size; the cost of an iteration grows with its square.
    csls_k : int, default 10
        Neighbourhood size of the CSLS hubness correction.
    reproject : bool, default True
        Re-project W onto the (semi-)orthogonal matrices after each update; False reproduces the
        reference notebook's unprojected update.
    random_state : int or None
        Drives every random choice.
    n_threads : int or None
        Threads for every kernel (default: all cores). Results do not depend on it.
    memory_limit : int or str or None
        Bound on the process's memory (bytes or e.g. "2GB"): the reading blocks, the kNN tiles
        and the stage arrays are planned from it, 300 MB of it being reserved for Python and the
        libraries (see ``_runtime/memory.py``). Too small a limit raises MemoryError before any work.
    fit_sample : int, default 100000
        Rows per side the stages work on. X_a and X_b may be arrays, dask arrays or anything
        :func:`minivec2vec.io.sources.open_source` accepts (.npy files, shard directories or
        lists, Parquet). ``fit_sample`` rows per side are drawn uniformly without replacement
        (the first use of ``random_state``, A then B); then each input is read ONCE, block by
        block, to check every row for NaN/Inf and all-zero rows, compute the mean of all rows
        and gather the drawn rows; every stage runs on those rows.

    Small inputs
    ------------
    With ``n`` = min(n_a, n_b, fit_sample) rows per side, fit needs ``n >= 50 * n_clusters``
    (1,000 rows per side with the defaults; a smaller ``n_clusters`` lowers it) and raises
    TooFewRowsError below. Every other size is an upper bound that scales down with ``n``:
    ``anchor_sample``, ``refine_sample``, ``mutual_sample``, ``mutual_final_sample`` <= n;
    ``n_neighbors``, ``refine_neighbors`` <= n // 20; ``refine_clusters`` <= n // 4;
    ``csls_k`` <= n // 100; refine-transport runs only when ``n <= transport_rows`` (1,500).
    The defaults are untouched from 2,000 rows per side; the sizes used are in
    ``stage_settings_``.

    Input: float16, float32 or float64 of any strides, read-only or memory-mapped, are used as
    they are; the stages work on one float32 copy of the sampled rows. NaN/Inf rows
    (NonFiniteError), all-zero rows (ZeroRowError) and other dtypes (DtypeError) are refused.
    n_restarts : int, default 1
        Independent runs of the stages up to refine-1 (anchors, pseudo-pairs, Procrustes,
        refine-1, then refine-transport on small inputs or refine-assignment on large ones),
        each with its own seed derived from ``random_state``. Each restart's map is scored
        (``restart_confidences_``) and, from ``RETURN_MIN_ROWS`` = 30,000 rows per side,
        checked (``restart_returns_``: does the refinement come back to it once it is turned
        far away? see :mod:`minivec2vec.stages.confidence`); the best-scoring map among those that
        pass (else among all) goes on to the later stages.
        Two or more also give ``restart_agreement_`` (how closely another restart confirms
        the kept map).
    extra_restarts : int, default 5
        Restarts added, one at a time, while the kept map is not confirmed (neither its return
        agreement reaches ``RETURN_THRESHOLD`` nor another restart agrees with it to
        ``AGREEMENT_THRESHOLD``): more chances to find the map. They take the seeds further
        restarts of ``n_restarts`` would have, so a fit that ran k of them equals a fit with
        ``n_restarts + k`` restarts and no extra ones; fits whose kept map is confirmed are
        unchanged and cost nothing more. 0 disables it.
    confidence_sample : int, default 5000
        Rows per side used to compute the confidence score.
    known_pairs_weight : float, default 5.0
        With ``known_pairs`` (see :meth:`fit`), each known pair counts as this many mutual
        pairs in every refine-mutual pass (0: they only choose the start). Measured at full
        size: 100 pairs on wordllama -> minilm-static 0.509 -> 0.568 with 5 (20: 0.521); 500
        on minilm -> wordllama 0.652 -> 0.672.
    verbose : bool, default False
        Print each stage's start and end (with the rows it works on, its time and the seconds
        since the fit began) on stderr. The same records always go to the ``minivec2vec``
        logger at INFO level, for applications that configure logging themselves.

    Fitted attributes include ``confidence_`` (unpaired confidence of the final W: 0.34-0.45
    measured for random maps, about 1 for a map as good as B's own sampling noise; between
    different models even the true map scores 0.68-0.80), ``restart_confidences_`` (the
    score of each restart's map), ``restart_returns_`` and ``return_agreement_`` (each
    restart's, and the kept one's, return agreement: the mean cosine between the images of
    the same A rows under the refinement run from the map and from the map turned to an
    agreement of ~0.4 with itself; measured at full size 0.78-0.85 for maps that found the
    alignment, 0.41-0.62 for failed ones) and ``restart_agreement_`` (mean cosine between the
    images under the kept map and under the restart that agrees with it most: at most 0.33
    measured for failed restarts, 0.55-0.77 between good ones; NaN with a single restart).
    Below ``RETURN_MIN_ROWS`` rows per side the return check does not run (empty / NaN).
    ``restart_maps_`` (n_restarts x d_a x d_b) holds each restart's map as it was scored, in
    restart order, and ``restart_agreements_`` (n_restarts x n_restarts) the agreement of
    every pair of them, computed as ``restart_agreement_`` is (so that is the largest entry of
    the kept restart's row off the diagonal): for studying the restarts. Both are empty for a
    fit from known pairs and are not stored in the map file.
    The fit warns with :class:`AlignmentWarning` unless the return agreement reaches
    ``RETURN_THRESHOLD`` = 0.70 or the restart agreement ``AGREEMENT_THRESHOLD`` = 0.40. A
    fit given ``known_pairs`` (see :meth:`fit`) runs no restarts (both NaN) and is checked by
    ``known_pairs_top1_`` instead (held-out top-1 on the pairs; NaN without them), warning below
    ``KNOWN_PAIRS_THRESHOLD`` = 0.20.
    """

    def __init__(self, *, n_runs=30, n_clusters=20, anchor_sample=10000, qap_restarts=30,
                 n_neighbors=50, refine_iter=100, refine_sample=1000, refine_neighbors=50,
                 alpha=0.5, transport_iter=200, transport_rows=1500, assignment_iter=1000,
                 assignment_rows=2000, refine_clusters=500,
                 mutual_iter=12, mutual_sample=10000,
                 mutual_final_sample=30000,
                 csls_k=10, reproject=True, random_state=None,
                 n_threads=None, memory_limit=None, fit_sample=100_000, n_restarts=1,
                 extra_restarts=5, confidence_sample=5000, known_pairs_weight=5.0,
                 verbose=False):
        self.n_runs = n_runs
        self.n_clusters = n_clusters
        self.anchor_sample = anchor_sample
        self.qap_restarts = qap_restarts
        self.n_neighbors = n_neighbors
        self.refine_iter = refine_iter
        self.refine_sample = refine_sample
        self.refine_neighbors = refine_neighbors
        self.alpha = alpha
        self.transport_iter = transport_iter
        self.transport_rows = transport_rows
        self.assignment_iter = assignment_iter
        self.assignment_rows = assignment_rows
        self.refine_clusters = refine_clusters
        self.mutual_iter = mutual_iter
        self.mutual_sample = mutual_sample
        self.mutual_final_sample = mutual_final_sample
        self.csls_k = csls_k
        self.reproject = reproject
        self.random_state = random_state
        self.n_threads = n_threads
        self.memory_limit = memory_limit
        self.fit_sample = fit_sample
        self.n_restarts = n_restarts
        self.extra_restarts = extra_restarts
        self.confidence_sample = confidence_sample
        self.known_pairs_weight = known_pairs_weight
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    # the names, defaults and checks are declared once, in _runtime/parameters.py; the
    # signature above spells the same names and defaults out (a test checks that they agree)
    _PARAM_NAMES = PARAMETER_NAMES

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._PARAM_NAMES}

    def set_params(self, **params):
        for name, value in params.items():
            if name not in self._PARAM_NAMES:
                raise InvalidParameterError(f"unknown parameter {name!r}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        """``MiniVec2Vec(...)`` with the parameters that differ from their declared defaults."""
        changed = [f"{p.name}={getattr(self, p.name)!r}" for p in PARAMETERS
                   if getattr(self, p.name) != p.default]
        return f"MiniVec2Vec({', '.join(changed)})"

    def _check_params(self):
        check_params(self.get_params())

    # ------------------------------------------------------------------ fit
    def fit(self, X_a, X_b, known_pairs=None):
        """Learn W from unpaired rows of space A (n_a x d_a) and space B (n_b x d_b).

        known_pairs : (pairs_a, pairs_b), optional
            A few items embedded by BOTH models: arrays of shape (m, d_a) and (m, d_b), row i
            of each the same item, m >= ``MIN_KNOWN_PAIRS`` (10). They replace the unpaired
            search for a starting map (the anchor stage and its restarts, refine-1 and
            refine-transport): the start is the Procrustes solution of these pairs, centred
            with the training means, and refine-mutual runs from it on the unpaired rows, the
            pairs counting ``known_pairs_weight`` times in each pass (refine-2 is skipped: it
            lowers such starts, 0.57 -> 0.80 top-1 without it on 25 minilm -> minilm-static
            pairs). This is the way out when the unpaired fit warns: on
            minilm -> minilm-static (rotated), where every unpaired fit fails, 50 known pairs
            give top-1 0.96 against a supervised ceiling of 0.99 (docs/experiments.md).
            ``known_pairs_top1_`` then checks the fit on them, held out.
        """
        self._check_params()
        with single_threaded_blas(), stage_log_to_stderr(self.verbose):
            return self._fit(X_a, X_b, known_pairs)

    def _fit(self, X_a, X_b, known_pairs=None):
        if is_dask_array(X_a) or is_dask_array(X_b):
            from .distributed import dask as _dask
            rng = check_random_state(self.random_state)
            t_start = time.perf_counter()
            known_pairs = check_known_pairs(known_pairs, X_a.shape[1], X_b.shape[1],
                                            MIN_KNOWN_PAIRS)
            rows_a, rows_b, mean_a, mean_b = _dask.read_and_sample(
                X_a, X_b, self.fit_sample, rng,
                lambda n_a, n_b: check_enough_rows(n_a, n_b, self.n_clusters, self.fit_sample))
            return self._fit_sample(rows_a, rows_b, mean_a, mean_b, rng,
                                    seconds_reading=time.perf_counter() - t_start,
                                    known_pairs=known_pairs)
        source_a = open_source(X_a, "X_a")
        source_b = open_source(X_b, "X_b")
        known_pairs = check_known_pairs(known_pairs, source_a.n_features, source_b.n_features,
                                        MIN_KNOWN_PAIRS)
        # the plan first: a limit that cannot hold the work fails before anything is read
        wide = np.float64 in (source_a.dtype, source_b.dtype)
        n_a, n_b = min(source_a.n_rows, self.fit_sample), min(source_b.n_rows, self.fit_sample)
        plan = self._memory_plan(n_a, n_b, source_a.n_features, source_b.n_features,
                                 source_a.dtype.itemsize, source_b.dtype.itemsize,
                                 sample_copies=3 if wide else 1)
        rng = check_random_state(self.random_state)
        t_start = time.perf_counter()
        logger.info("read_and_sample: started (X_a %d x %d, X_b %d x %d; up to %d rows per side "
                    "drawn)", source_a.n_rows, source_a.n_features, source_b.n_rows,
                    source_b.n_features, self.fit_sample)
        gathered = []
        bar = progress_bar("read_and_sample", source_a.n_rows + source_b.n_rows, unit="rows")
        try:
            for source, name in ((source_a, "scan_rows_a"), (source_b, "scan_rows_b")):
                chosen = sample_indices(source.n_rows, self.fit_sample, rng)
                # an in-memory array that is sampled whole is used as it is: no gathered copy
                whole = isinstance(source, ArraySource) and source.n_rows <= self.fit_sample
                mean, rows = scan(source, plan[name], None if whole else chosen,
                                  _sample_dtype(source.dtype), reject_zero_rows=True,
                                  on_rows=None if bar is None else bar.update)
                gathered.append((mean, source.X if whole else rows, not whole))
        finally:
            if bar is not None:
                bar.close()
        (mean_a, rows_a, fresh_a), (mean_b, rows_b, fresh_b) = gathered
        # after the NaN check (a bad row is the more useful message); too few rows to matter
        check_enough_rows(source_a.n_rows, source_b.n_rows, self.n_clusters, self.fit_sample)
        return self._fit_sample(rows_a, rows_b, mean_a, mean_b, rng,
                                seconds_reading=time.perf_counter() - t_start,
                                rows_are_scratch=fresh_a and fresh_b, known_pairs=known_pairs)

    def _memory_plan(self, n_a, n_b, d_a, d_b, itemsize_a, itemsize_b, sample_copies=1,
                     sizes=None):
        """The memory plan of a fit on n_a + n_b sampled rows, with the stage sizes scaled to
        them (``sizes``, default: computed here)."""
        sizes = sizes or stage_settings(self.get_params(), n_a, n_b)
        return plan_fit(self.memory_limit, n_a=n_a, n_b=n_b, d_a=d_a, d_b=d_b,
                        itemsize_a=itemsize_a, itemsize_b=itemsize_b,
                        params={**self.get_params(), **sizes}, sample_copies=sample_copies)

    def fit_from_sample(self, X_a, X_b, mean_a, mean_b, rng=None, *, seconds_reading=0.0,
                        rows_are_scratch=False, known_pairs=None):
        """Run every stage on rows already drawn: X_a, X_b (the sampled rows, at most
        ``fit_sample`` per side), centred with ``mean_a``, ``mean_b`` (the column means of ALL
        rows). For input adapters and other engines (Dask, Spark, a loop over files) that
        compute the means and draw the rows themselves; ``fit`` calls the same code.

        rng : the ``numpy.random.Generator`` that drew the rows, whose stream the stages
            continue (default: a new one from ``random_state``). To reproduce ``fit`` exactly,
            draw the rows with :func:`minivec2vec.kernels.rows.sample_rows` from
            ``np.random.default_rng(random_state)``, A then B, and pass that generator.
        seconds_reading : time the caller spent reading (``timings_["read_and_sample"]``)
        rows_are_scratch : True lets float32 C-contiguous writable rows be centred and
            normalised in place (the caller hands them over), which halves the resident memory
        known_pairs : as in :meth:`fit`
        """
        self._check_params()
        rng = check_random_state(self.random_state) if rng is None else rng
        known_pairs = check_known_pairs(known_pairs, X_a.shape[1], X_b.shape[1], MIN_KNOWN_PAIRS)
        with single_threaded_blas(), stage_log_to_stderr(self.verbose):
            return self._fit_sample(X_a, X_b, mean_a, mean_b, rng, seconds_reading,
                                    rows_are_scratch, known_pairs, warn_stacklevel=3)

    def _fit_sample(self, X_a, X_b, mean_a, mean_b, rng, seconds_reading=0.0,
                    rows_are_scratch=False, known_pairs=None, warn_stacklevel=4):
        """:meth:`fit_from_sample` with validated ``known_pairs``, inside the fit's thread and
        log settings; ``warn_stacklevel`` points an AlignmentWarning at the user's call."""
        n_threads = resolve_n_threads(self.n_threads)
        check_enough_rows(X_a.shape[0], X_b.shape[0], self.n_clusters, self.fit_sample)
        sizes = stage_settings(self.get_params(), X_a.shape[0], X_b.shape[0])
        in_place = rows_are_scratch and all(
            X.dtype == np.float32 and X.flags.c_contiguous and X.flags.writeable
            for X in (X_a, X_b))
        plan = self._memory_plan(X_a.shape[0], X_b.shape[0], X_a.shape[1], X_b.shape[1],
                                 X_a.dtype.itemsize, X_b.dtype.itemsize,
                                 sample_copies=1 if in_place else 2, sizes=sizes)
        timings = {"read_and_sample": seconds_reading}
        t_start = time.perf_counter() - seconds_reading
        logger.info("read_and_sample: done in %.1f s (%d + %d rows)", seconds_reading,
                    X_a.shape[0], X_b.shape[0])

        self.mean_a_ = np.asarray(mean_a, dtype=np.float64)
        self.mean_b_ = np.asarray(mean_b, dtype=np.float64)
        self.scale_a_ = float(mean_centred_norm(X_a, self.mean_a_))
        self.scale_b_ = float(mean_centred_norm(X_b, self.mean_b_))
        A = centre_normalise(X_a, self.mean_a_, "X_a", out=X_a if in_place else None)
        B = centre_normalise(X_b, self.mean_b_, "X_b", out=X_b if in_place else None)

        settings = pipeline.FitSettings.from_params(self.get_params(), n_threads, sizes, plan)
        found = pipeline.run(A, B, self.mean_a_, self.mean_b_, rng, settings, timings,
                             known_pairs)
        self.known_pairs_top1_ = found.known_pairs_top1
        self.confidence_ = found.confidence
        self.restart_confidences_ = np.asarray(found.restart_confidences, dtype=np.float64)
        self.restart_returns_ = np.asarray(found.restart_returns, dtype=np.float64)
        self.restart_maps_ = np.asarray(found.restart_maps, dtype=np.float64)
        self.restart_agreements_ = found.restart_agreements
        self.restart_agreement_ = found.restart_agreement
        self.return_agreement_ = found.return_agreement
        reason = doubtful(self.confidence_, self.restart_agreement_, self.known_pairs_top1_,
                          self.return_agreement_)
        if reason:
            warnings.warn(f"the alignment is doubtful: {reason}", AlignmentWarning,
                          stacklevel=warn_stacklevel)

        self.W_ = np.ascontiguousarray(found.W, dtype=np.float64)
        self.anchors_a_ = found.anchors.anchors_a
        self.anchors_b_ = found.anchors.anchors_b
        self.anchor_scores_ = found.anchors.run_scores
        self.n_features_a_ = X_a.shape[1]
        self.n_features_b_ = X_b.shape[1]
        self.stage_settings_ = sizes
        timings["total"] = time.perf_counter() - t_start
        self.timings_ = timings
        logger.info("fit done in %.1f s (%s)", timings["total"],
                    ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"))
        return self

    # ------------------------------------------------------------------ transform
    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise NotFittedError("this MiniVec2Vec is not fitted yet: call fit() or load() first")

    def transform(self, X, add_mean=False, memory_limit=None):
        """Map rows of space A into space B (a dask array gives a lazy dask array).

        X is centred with A's TRAINING mean, L2-normalised and multiplied by W. The result has
        unit-scale rows in B's centred frame; with ``add_mean=True`` it is rescaled to the mean
        norm of B's centred training rows and B's training mean is added back, so it can sit next
        to raw B vectors. Returns float32 of shape (n, d_b). X may be an array or anything
        :func:`minivec2vec.io.sources.open_source` accepts; it is read block by block, the block
        size planned from ``memory_limit`` (which must also hold the result: to map more rows
        than fit in memory, stream them to a file with :func:`minivec2vec.io.etl.apply_map`).
        """
        return self._map(X, add_mean, memory_limit, inverse=False)

    def inverse_transform(self, X, add_mean=False, memory_limit=None):
        """Map rows of space B into space A: the same as :meth:`transform` with W^T, B's
        training mean in and (with ``add_mean``) A's scale and mean out. float32 (n, d_a).

        For an orthogonal W it undoes :meth:`transform` up to the length of the centred row:
        ``inverse_transform(transform(x, add_mean=True), add_mean=True)`` is
        ``mean_a + scale_a * (x - mean_a) / |x - mean_a|`` (x itself when its centred norm is
        A's mean centred norm); cosine search does not see that length. When d_a > d_b
        (W^T W = I) the B rows land in the d_b-dimensional image of W in A; when d_a < d_b
        (W W^T = I) the part of a B row outside that image is dropped. Use it to send B queries
        to an index of A vectors during a migration.
        """
        return self._map(X, add_mean, memory_limit, inverse=True)

    def _check_mappable(self, add_mean, inverse):
        """Fitted, and (inverse with add_mean) holding A's scale."""
        self._check_fitted()
        if inverse and add_mean and not np.isfinite(getattr(self, "scale_a_", np.nan)):
            raise MapFileError("inverse_transform(add_mean=True) needs A's scale, which map "
                               "files written by minivec2vec before 0.1.0 of 2026-12-03 lack; "
                               "refit, or use add_mean=False")

    def _map(self, X, add_mean, memory_limit, inverse):
        self._check_mappable(add_mean, inverse)
        if is_dask_array(X):
            from .distributed import dask as _dask
            return _dask.transform(self, X, add_mean, inverse=inverse)
        source = open_source(X, "X")
        self._check_input_features(source, inverse)
        d_out = self.W_.shape[0] if inverse else self.W_.shape[1]
        out_bytes = 4 * source.n_rows * d_out
        rows = chunk_rows(working_budget(memory_limit, "transform"), source.n_features,
                          source.dtype.itemsize, d_out, out_bytes,
                          f"{'inverse_transform' if inverse else 'transform'} of "
                          f"{source.n_rows} rows (the result alone is {out_bytes} bytes)")
        out = np.empty((source.n_rows, d_out), dtype=np.float32)
        W = self._map_matrix(inverse)
        n_threads = resolve_n_threads(self.n_threads)
        for start, block in source.blocks(rows):
            self._transform_block(block, start, W, add_mean, out[start:start + block.shape[0]],
                                  n_threads, inverse)
        return out

    def _map_matrix(self, inverse=False):
        """float32 C-contiguous W (A -> B) or W^T (B -> A)."""
        return np.ascontiguousarray(self.W_.T if inverse else self.W_, dtype=np.float32)

    def _check_input_features(self, source, inverse=False):
        expected = self.W_.shape[1] if inverse else self.W_.shape[0]
        if source.n_features != expected:
            raise DimensionMismatchError(
                f"{source.name}: has {source.n_features} features, expected {expected} "
                f"(the map's {'B' if inverse else 'A'} side)")

    def _map_frames(self, inverse=False):
        """(mean in, mean out, scale out) of a direction."""
        if inverse:
            return self.mean_b_, self.mean_a_, getattr(self, "scale_a_", float("nan"))
        return self.mean_a_, self.mean_b_, self.scale_b_

    def _transform_block(self, block, row_offset, W, add_mean, out, n_threads=1, inverse=False):
        """Map one block of rows (``row_offset`` = its first row, for error messages) into
        ``out``; ``W`` is :meth:`_map_matrix` of the same direction. The same code maps every
        chunk, in memory, streamed to a file or on Dask."""
        mean_in, mean_out, scale_out = self._map_frames(inverse)
        return map_rows(block, W, mean_in, mean_out, scale_out, add_mean,
                        row_offset=row_offset, out=out, n_threads=n_threads)

    def fit_transform(self, X_a, X_b, known_pairs=None):
        return self.fit(X_a, X_b, known_pairs).transform(X_a)

    # ------------------------------------------------------------------ persistence
    _ARRAYS = ("W_", "mean_a_", "mean_b_", "anchors_a_", "anchors_b_", "anchor_scores_")

    def save(self, path):
        """Write the fitted map to exactly ``path`` (no extension added), atomically."""
        self._check_fitted()
        from ._version import __version__
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        extra = {"scale_b_": self.scale_b_, "timings_": self.timings_,
                 "scale_a_": _finite_or_none(getattr(self, "scale_a_", None)),
                 "confidence_": getattr(self, "confidence_", None),
                 # NaN (one restart) is not JSON: stored as null
                 "restart_agreement_": _finite_or_none(getattr(self, "restart_agreement_", None)),
                 "return_agreement_": _finite_or_none(getattr(self, "return_agreement_", None)),
                 "known_pairs_top1_": _finite_or_none(getattr(self, "known_pairs_top1_", None)),
                 "minivec2vec_version": __version__}
        if hasattr(self, "stage_settings_"):
            extra["stage_settings_"] = {k: int(v) for k, v in self.stage_settings_.items()}
        for name in ("restart_confidences_", "restart_returns_"):
            if hasattr(self, name):
                extra[name] = [_finite_or_none(v) for v in getattr(self, name)]
        _mapfile.write_map(path, _json_safe_params(self.get_params()), arrays, extra)

    @classmethod
    def load(cls, path):
        """Read a map written by :meth:`save`."""
        params, arrays, extra = _mapfile.read_map(path)
        missing = [name for name in cls._ARRAYS if name not in arrays]
        if missing:
            raise MapFileError(f"{path!r}: missing arrays {missing}")
        W = arrays["W_"]
        if (W.ndim != 2 or arrays["mean_a_"].shape != (W.shape[0],)
                or arrays["mean_b_"].shape != (W.shape[1],)):
            raise MapFileError(f"{path!r}: inconsistent array shapes")
        for name in cls._ARRAYS:
            array = arrays[name]
            if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
                raise MapFileError(f"{path!r}: array {name!r} is not finite floating point "
                                   f"(dtype {array.dtype})")
        try:
            scale_b = float(extra.get("scale_b_", 1.0))
        except (TypeError, ValueError):
            raise MapFileError(f"{path!r}: corrupt meta.json (scale_b_ is not a number)") from None
        try:  # absent (null) in map files written before 0.1.0 of 2026-12-03
            scale_a = float("nan") if extra.get("scale_a_") is None else float(extra["scale_a_"])
        except (TypeError, ValueError):
            raise MapFileError(f"{path!r}: corrupt meta.json (scale_a_ is not a number)") from None
        model = cls(**{k: v for k, v in params.items() if k in cls._PARAM_NAMES})
        for name in cls._ARRAYS:
            setattr(model, name, arrays[name])
        model.scale_b_ = scale_b
        model.scale_a_ = scale_a
        model.timings_ = dict(extra.get("timings_", {}))
        try:
            if extra.get("confidence_") is not None:
                model.confidence_ = float(extra["confidence_"])
            for name in ("restart_agreement_", "return_agreement_", "known_pairs_top1_"):
                if name in extra:   # NaN (not computed) is stored as null
                    setattr(model, name, float("nan") if extra[name] is None else float(extra[name]))
        except (TypeError, ValueError):
            raise MapFileError(f"{path!r}: corrupt meta.json (a score is not a number)") from None
        # absent from map files written before they were saved: those still load, without them
        if "stage_settings_" in extra:
            settings = extra["stage_settings_"]
            if not (isinstance(settings, dict) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in settings.values())):
                raise MapFileError(f"{path!r}: corrupt meta.json (stage_settings_ is not a "
                                   "mapping of integers)")
            model.stage_settings_ = dict(settings)
        for name in ("restart_confidences_", "restart_returns_"):
            if name not in extra:
                continue
            try:
                setattr(model, name, np.array(
                    [float("nan") if v is None else float(v) for v in extra[name]],
                    dtype=np.float64))
            except (TypeError, ValueError):
                raise MapFileError(f"{path!r}: corrupt meta.json ({name} is not a list of "
                                   "numbers)") from None
        model.n_features_a_, model.n_features_b_ = W.shape
        return model


def _finite_or_none(value):
    return None if value is None or not np.isfinite(value) else float(value)


def _json_safe_params(params):
    """Parameters as JSON values: numpy scalars become Python numbers; a Generator passed as
    random_state cannot be stored and is recorded as None (the fitted arrays are what matter)."""
    safe = {}
    for name, value in params.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.random.Generator):
            value = None
        safe[name] = value
    return safe












def _sample_dtype(dtype):
    """The sampled rows are gathered as float32 (float64 inputs stay float64, so the result
    is the same as centring the original rows)."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)
