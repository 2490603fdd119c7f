"""Moved to :mod:`minivec2vec.stages.pseudo_pairs`; this path is kept so that existing code runs."""
import sys

from .stages import pseudo_pairs as _moved

sys.modules[__name__] = _moved
