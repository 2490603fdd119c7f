"""The memory plan: how a ``memory_limit`` is split between the fixed overhead, the resident
arrays of each stage and the blocks that stream, decided before any work starts.

Split of a limit L (bytes):

* :data:`FIXED_OVERHEAD` (300 MB) is reserved for the interpreter, numpy, scipy, Numba (its
  compiled kernels and LLVM) and the C++ extension: ``import minivec2vec`` measured 166 MB of
  RSS on Linux/CPython 3.11 with Numba's cache warm, 266 MB when the kernels compile, 279 MB
  after a first small fit; pyarrow (Parquet) adds 32 MB.
* Fit: the sampled rows of both sides stay resident as float32 (``fit_sample x (d_a + d_b) x 4``)
  for the whole fit; each stage then gets what is left for its own arrays (relative
  representations, subsample copies) and the kNN gets the remainder for its tiles, planned by
  :func:`minivec2vec.kernels.knn.plan_knn`. The reading pass uses blocks of at most :data:`MAX_BLOCK_ROWS`
  rows, fewer when the budget is small.
* Apply / transform: W plus per-chunk buffers (input rows, their float32 centred copy, the
  output rows); the chunk has at most :data:`MAX_BLOCK_ROWS` rows, fewer when the budget is
  small. ``transform`` into memory also keeps its whole (n, d_b) float32 result.

A limit too small for the smallest block raises :class:`MemoryLimitError` (a ``MemoryError``)
naming what does not fit, before anything is read.
"""
from __future__ import annotations

from ..exceptions import MemoryLimitError
from .blocks import BLOCK_ROWS, SUM_ROWS
from .validation import parse_memory
from .sizing import ASSIGNMENT_MIN_ROWS
from ..kernels.knn import plan_knn
from ..stages.assignment import assignment_bytes
from ..stages.transport import transport_bytes

FIXED_OVERHEAD = 300 * 10**6
MAX_BLOCK_ROWS = BLOCK_ROWS
MIN_SCAN_ROWS = SUM_ROWS     # the column sums run over fixed sub-blocks of this many rows


def working_budget(memory_limit, what):
    """Bytes left for data once the fixed overhead is reserved; None when there is no limit."""
    limit = parse_memory(memory_limit)
    if limit is None:
        return None
    if limit <= FIXED_OVERHEAD:
        raise MemoryLimitError(
            f"memory_limit={limit} bytes is too small for {what}: {FIXED_OVERHEAD} bytes are "
            "reserved for Python, numpy, scipy and the compiled kernels alone")
    return limit - FIXED_OVERHEAD


def _rows_that_fit(budget, per_row, minimum, what, fixed=0):
    if budget is None:
        return MAX_BLOCK_ROWS
    rows = (budget - fixed) // per_row if budget > fixed else 0
    if rows < minimum:
        raise MemoryLimitError(
            f"memory_limit is too small for {what}: one block of {minimum} rows needs "
            f"{fixed + minimum * per_row + FIXED_OVERHEAD} bytes including the fixed overhead of "
            f"{FIXED_OVERHEAD}")
    return int(min(MAX_BLOCK_ROWS, rows))


def scan_block_rows(budget, n_features, itemsize, resident, what):
    """Rows per block of the reading pass (a multiple of MIN_SCAN_ROWS) with ``resident`` bytes
    already held: the read buffer, the NaN mask and a float64 sub-block sum per row."""
    per_row = n_features * (itemsize + 1) + 8
    rows = _rows_that_fit(budget, per_row, MIN_SCAN_ROWS, what, fixed=resident)
    return rows - rows % MIN_SCAN_ROWS


def chunk_rows(budget, n_features_in, itemsize, n_features_out, resident, what):
    """Rows per chunk of transform/apply: input block, NaN mask, float32 centred copy, output."""
    per_row = n_features_in * (itemsize + 1 + 4) + 4 * n_features_out + 16
    fixed = resident + 4 * n_features_in * n_features_out
    return _rows_that_fit(budget, per_row, 1, what, fixed=fixed)


def plan_fit(memory_limit, *, n_a, n_b, d_a, d_b, itemsize_a, itemsize_b, params,
             sample_copies=1):
    """Block sizes and per-stage kNN budgets of a fit on n_a + n_b sampled rows
    (``sample_copies=2`` when the sampled rows cannot be normalised in place).

    Returns a dict: ``scan_rows_a``, ``scan_rows_b`` (reading pass), ``knn_pseudo_pairs``,
    ``knn_refine``, ``knn_mutual`` (memory_limit for each stage's kNN calls, None = unlimited).
    """
    budget = working_budget(memory_limit, "fit")
    plan = {"scan_rows_a": MAX_BLOCK_ROWS, "scan_rows_b": MAX_BLOCK_ROWS,
            "knn_pseudo_pairs": None, "knn_refine": None, "knn_mutual": None}
    if budget is None:
        return plan
    sample = 4 * (n_a * d_a + n_b * d_b) * sample_copies
    if sample >= budget:
        most = budget // (4 * (d_a + d_b) * sample_copies)
        raise MemoryLimitError(
            f"memory_limit={parse_memory(memory_limit)} bytes is too small for fit_sample: the "
            f"sampled rows alone ({n_a} x {d_a} + {n_b} x {d_b} float32) need {sample} bytes "
            f"beyond the fixed overhead of {FIXED_OVERHEAD}; use fit_sample <= {most} or a "
            "larger limit")
    plan["scan_rows_a"] = scan_block_rows(budget, d_a, itemsize_a, 4 * n_a * d_a,
                                          "reading X_a")
    plan["scan_rows_b"] = scan_block_rows(budget, d_b, itemsize_b, sample, "reading X_b")
    left = budget - sample
    n_anchors = params["n_runs"] * params["n_clusters"]

    def knn_budget(extra, stage, n_queries, n_database, d, k):
        """What the stage's kNN may use once ``extra`` bytes of its own arrays are held."""
        room = left - extra
        try:
            plan_knn(n_queries, n_database, d, k, max(room, 1), True)
        except MemoryError:
            raise MemoryLimitError(
                f"memory_limit={parse_memory(memory_limit)} bytes is too small for the {stage} "
                f"stage: its arrays need {extra} bytes besides the {sample} bytes of sampled "
                f"rows and the fixed overhead, and its kNN more than the {max(room, 0)} left; "
                "lower fit_sample or raise the limit") from None
        return room

    rel = 4 * n_anchors * (n_a + n_b)
    plan["knn_pseudo_pairs"] = knn_budget(rel, "pseudo-pairs", n_a, n_b, n_anchors,
                                          min(params["n_neighbors"], n_b))
    refine_rows = min(params["refine_sample"], n_a)
    # refine-1 also holds B packed for the kNN kernel (int8 codes + per-row scales)
    plan["knn_refine"] = knn_budget(4 * refine_rows * (d_a + d_b) + n_b * (d_b + 16), "refine-1",
                                    refine_rows, n_b, d_b, params["refine_neighbors"])
    # the last (largest) pass of the growing schedule sets the peak
    last = params["mutual_final_sample"]
    m_a, m_b = min(last, n_a), min(last, n_b)
    mutual_arrays = 4 * (m_a * d_a + m_b * d_b + m_a * d_b) + 8 * (m_a + m_b) * (d_b + 1)
    plan["knn_mutual"] = knn_budget(mutual_arrays, "refine-mutual", max(m_a, m_b),
                                    max(m_a, m_b), d_b + 1, min(params["csls_k"], m_a, m_b))
    # refine-transport (small inputs only): its plan and products, no kNN
    if params["transport_iter"]:
        rows = params["transport_rows"]
        need = transport_bytes(min(rows, n_a), min(rows, n_b), d_a, d_b)
        if need > left:
            raise MemoryLimitError(f"memory_limit is too small for refine-transport: its plan "
                                  f"needs {need} bytes besides the sampled rows; lower "
                                  "transport_rows or raise the limit")
    # refine-assignment (large inputs only): its batches and score matrices, no kNN
    if params["assignment_iter"] and min(n_a, n_b) >= ASSIGNMENT_MIN_ROWS:
        rows = min(params["assignment_rows"], n_a, n_b)
        need = assignment_bytes(rows, d_a, d_b)
        if need > left:
            raise MemoryLimitError(f"memory_limit is too small for refine-assignment: its "
                                  f"batches need {need} bytes besides the sampled rows; lower "
                                  "assignment_rows or raise the limit")
    # refine-2 (k-means on each side): labels, squared norms and the NaN mask of one block
    kmeans_bytes = 16 * max(n_a, n_b) + MAX_BLOCK_ROWS * max(d_a, d_b)
    if kmeans_bytes > left:
        raise MemoryLimitError(f"memory_limit is too small for refine-2: k-means needs "
                              f"{kmeans_bytes} bytes besides the sampled rows")
    return plan
