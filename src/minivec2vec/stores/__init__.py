"""Moved to :mod:`minivec2vec.io.stores`; this path is kept so that existing code runs."""
import sys

from ..io import stores as _moved
from ..io.stores import faiss_index, lance_table, qdrant_collection  # noqa: F401

# the store modules answer to their former paths too (minivec2vec.stores.qdrant_collection, ...)
for _name in ("faiss_index", "lance_table", "qdrant_collection"):
    sys.modules[f"{__name__}.{_name}"] = getattr(_moved, _name)
sys.modules[__name__] = _moved
