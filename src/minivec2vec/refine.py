"""Moved to :mod:`minivec2vec.stages.refine`; this path is kept so that existing code runs."""
import sys

from .stages import refine as _moved

sys.modules[__name__] = _moved
