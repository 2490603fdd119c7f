"""Moved to :mod:`minivec2vec.kernels.kmeans`; this path is kept so that existing code runs."""
import sys

from .kernels import kmeans as _moved

sys.modules[__name__] = _moved
