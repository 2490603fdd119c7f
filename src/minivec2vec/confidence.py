"""Moved to :mod:`minivec2vec.stages.confidence`; this path is kept so that existing code runs."""
import sys

from .stages import confidence as _moved

sys.modules[__name__] = _moved
