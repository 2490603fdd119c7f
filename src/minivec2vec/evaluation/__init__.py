"""Measuring a map: the metrics (:mod:`.metrics`: paired top-k, retrieval recall), the paired
protocol on the shipped sample (:mod:`.protocol`, :mod:`.datasets`), synthetic pairs with a
known map (:mod:`.synthetic`) and the HTML report (:mod:`.report`).

The metrics' public names are importable from here, as they were when this was one module.
"""
from .metrics import (DEFAULT_KS, check_ks, check_retrieval_plan, evaluate, evaluate_retrieval,
                      open_test_sets, read_qrels, read_test_sets)

__all__ = ["DEFAULT_KS", "check_ks", "check_retrieval_plan", "evaluate", "evaluate_retrieval",
           "open_test_sets", "read_qrels", "read_test_sets"]
