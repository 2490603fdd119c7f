"""Moved to :mod:`minivec2vec.stages.anchors`; this path is kept so that existing code runs."""
import sys

from .stages import anchors as _moved

sys.modules[__name__] = _moved
