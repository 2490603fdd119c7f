"""Moved to :mod:`minivec2vec.stages.assignment`; this path is kept so that existing code runs."""
import sys

from .stages import assignment as _moved

sys.modules[__name__] = _moved
