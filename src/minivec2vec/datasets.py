"""Moved to :mod:`minivec2vec.evaluation.datasets`; this path is kept so that existing code runs."""
import sys

from .evaluation import datasets as _moved

sys.modules[__name__] = _moved
