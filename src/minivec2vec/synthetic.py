"""Moved to :mod:`minivec2vec.evaluation.synthetic`; this path is kept so that existing code runs."""
import sys

from .evaluation import synthetic as _moved

sys.modules[__name__] = _moved
