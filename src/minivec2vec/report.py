"""Moved to :mod:`minivec2vec.evaluation.report`; this path is kept so that existing code runs."""
import sys

from .evaluation import report as _moved

sys.modules[__name__] = _moved
