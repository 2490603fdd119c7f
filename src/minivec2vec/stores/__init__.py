"""Vector stores as inputs of ``fit`` / ``apply`` and outputs of ``apply``.

A store is named by a URI-like string ``SCHEME:PATH`` (``faiss:vectors.index``). Each store is
one module of this package with

* a source class (an :class:`minivec2vec.sources.EmbeddingSource` that also gives each row's
  id, ``ids()``), opened by ``open(path, name)``;
* ``write(path, source, mapped_blocks, d_out)``: a NEW store of the same kind as the source,
  holding the mapped vectors under the same ids, written to a temporary name and renamed into
  place when complete.

Adding a store is adding such a module and a line to ``_SCHEMES``.
"""
from __future__ import annotations

import importlib
import os

from .._errors import InvalidParameterError

_SCHEMES = {"faiss": "faiss_index"}


def parse(uri):
    """(scheme, path) when ``uri`` names a store, else None."""
    if not isinstance(uri, str) or ":" not in uri:
        return None
    scheme, _, path = uri.partition(":")
    if scheme not in _SCHEMES:
        return None
    if not path:
        raise InvalidParameterError(f"{uri!r}: a store needs a path after '{scheme}:'")
    return scheme, os.path.expanduser(path)


def module(scheme):
    return importlib.import_module(f".{_SCHEMES[scheme]}", __name__)


def open_store(uri, name="X"):
    scheme, path = parse(uri)
    return module(scheme).open(path, name)
