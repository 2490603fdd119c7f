"""Moved to :mod:`minivec2vec.kernels.procrustes`; this path is kept so that existing code runs."""
import sys

from .kernels import procrustes as _moved

sys.modules[__name__] = _moved
