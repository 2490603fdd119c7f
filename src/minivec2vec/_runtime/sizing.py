"""How the stages size themselves to the input: the minimum rows per side, the scale-down rule,
and the memory plan of every kNN call, all checked before the first stage runs.

The rule (``n`` = rows per side the stages see = min(n_a, n_b, fit_sample)):

* minimum: ``n >= 50 * n_clusters`` (1,000 rows per side with the default 20 clusters). Each
  anchor run clusters its sample into ``n_clusters`` clusters; fewer than 50 rows per cluster
  leaves centroids too noisy for the Gram-matrix matching. A smaller ``n_clusters`` (at least 3)
  lowers the minimum: ``n_clusters=10`` fits 500 rows per side.
* every other size parameter is an upper bound that shrinks with ``n``:
  ``anchor_sample``, ``refine_sample``, ``mutual_sample`` and ``mutual_final_sample`` -> at
  most ``n``;
  ``n_neighbors`` and ``refine_neighbors`` -> at most ``n // 20`` (5% of the database);
  ``refine_clusters`` -> at most ``n // 4`` (at least 4 rows per cluster);
  ``csls_k`` -> at most ``n // 100``.
* refine-transport runs only on small inputs: ``transport_iter`` -> 0 when
  ``n > transport_rows``; refine-assignment only on large ones: ``assignment_iter`` -> 0 when
  ``n < ASSIGNMENT_MIN_ROWS`` (10,000), so that its batches are fresh random samples, and
  ``assignment_rows`` -> at most ``n``.
  At ``n >= 2000`` the defaults are untouched; the values used are kept in ``stage_settings_``.
"""
from __future__ import annotations

from ..exceptions import TooFewRowsError

ROWS_PER_ANCHOR_CLUSTER = 50
NEIGHBOUR_FRACTION = 20        # k <= n // 20
ROWS_PER_REFINE_CLUSTER = 4    # refine_clusters <= n // 4
CSLS_FRACTION = 100            # csls_k <= n // 100
ASSIGNMENT_MIN_ROWS = 10_000   # refine-assignment runs from this many rows per side


def minimum_rows(n_clusters: int) -> int:
    """Rows per side the stages need with ``n_clusters`` anchor clusters (1,000 by default)."""
    return ROWS_PER_ANCHOR_CLUSTER * n_clusters


def check_enough_rows(n_a: int, n_b: int, n_clusters: int, fit_sample: int) -> None:
    """TooFewRowsError naming the side, its row count and the minimum, before any work."""
    need = minimum_rows(n_clusters)
    hint = (f"n_clusters={n_clusters} anchor clusters need at least {need} rows per side "
            f"({ROWS_PER_ANCHOR_CLUSTER} per cluster; the defaults need "
            f"{minimum_rows(20)}): pass more rows or a smaller n_clusters (at least 3)")
    for name, n in (("X_a", n_a), ("X_b", n_b)):
        if n < need:
            raise TooFewRowsError(f"{name}: has {n} rows, too few: {hint}")
    if fit_sample < need:
        raise TooFewRowsError(f"fit_sample={fit_sample} is too small: {hint}")


def stage_settings(params: dict, n_a: int, n_b: int) -> dict:
    """The sizes each stage uses on ``n_a`` and ``n_b`` rows (see the module docstring)."""
    n = min(n_a, n_b)
    k_cap = max(1, n // NEIGHBOUR_FRACTION)
    return {
        "n_clusters": params["n_clusters"],
        "anchor_sample": min(params["anchor_sample"], n),
        "n_neighbors": min(params["n_neighbors"], k_cap),
        "refine_sample": min(params["refine_sample"], n),
        "refine_neighbors": min(params["refine_neighbors"], k_cap),
        "transport_iter": params["transport_iter"] if n <= params["transport_rows"] else 0,
        "assignment_iter": params["assignment_iter"] if n >= ASSIGNMENT_MIN_ROWS else 0,
        "assignment_rows": min(params["assignment_rows"], n),
        "refine_clusters": min(params["refine_clusters"], n // ROWS_PER_REFINE_CLUSTER),
        "mutual_sample": min(params["mutual_sample"], n),
        "mutual_final_sample": min(params["mutual_final_sample"], n),
        "csls_k": min(params["csls_k"], max(1, n // CSLS_FRACTION)),
    }
