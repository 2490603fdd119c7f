"""Moved to :mod:`minivec2vec.io.sources`; this path is kept so that existing code runs."""
import sys

from .io import sources as _moved

sys.modules[__name__] = _moved
