"""Moved to :mod:`minivec2vec.kernels.knn`; this path is kept so that existing code runs."""
import sys

from .kernels import knn as _moved

sys.modules[__name__] = _moved
