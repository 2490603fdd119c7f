"""Moved to :mod:`minivec2vec.evaluation.protocol`; this path is kept so that existing code runs."""
import sys

from .evaluation import protocol as _moved

sys.modules[__name__] = _moved
