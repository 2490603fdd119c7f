"""Moved to :mod:`minivec2vec.stages.transport`; this path is kept so that existing code runs."""
import sys

from .stages import transport as _moved

sys.modules[__name__] = _moved
