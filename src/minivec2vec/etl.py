"""Moved to :mod:`minivec2vec.io.etl`; this path is kept so that existing code runs."""
import sys

from .io import etl as _moved

sys.modules[__name__] = _moved
