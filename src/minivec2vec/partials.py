"""Moved to :mod:`minivec2vec.kernels.partials`; this path is kept so that existing code runs."""
import sys

from .kernels import partials as _moved

sys.modules[__name__] = _moved
