"""The real sample shipped with the package (WordNet glosses embedded by three models).

5000 row-aligned rows of all-MiniLM-L6-v2 (384-d), WordLlama (256-d) and multilingual-e5-small
(384-d), float16, with their texts; see ``data/sample.json`` and ``data/LICENSE-WordNet.txt`` (WordNet 3.0 Copyright 2006 by
Princeton University. All rights reserved.).
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from ..exceptions import InvalidParameterError
from .protocol import Split, random_rotation, split

SAMPLE_MODELS = ("minilm", "wordllama", "e5")
SAMPLE_POOL = 1000


def _data_path(name):
    return resources.files("minivec2vec").joinpath("data", name)


def load_sample(model):
    """The (5000, d) float16 embeddings of the sample by ``model`` (one of SAMPLE_MODELS)."""
    if model not in SAMPLE_MODELS:
        raise InvalidParameterError(f"model: expected one of {SAMPLE_MODELS}, got {model!r}")
    with _data_path(f"{model}.npy").open("rb") as fh:
        return np.load(fh, allow_pickle=False)


def load_sample_texts():
    """The 5000 texts of the sample, row i = text of row i."""
    return _data_path("texts.txt").read_text(encoding="utf-8").splitlines()


def sample_split(model_a, model_b, rotate_seed=None, pool=SAMPLE_POOL) -> Split:
    """The protocol split of the sample: last ``pool`` rows paired test set, two disjoint
    training halves; B's coordinates rotated by a random orthogonal matrix when
    ``rotate_seed`` is given."""
    A = load_sample(model_a)
    B = load_sample(model_b)
    R = None if rotate_seed is None else random_rotation(B.shape[1], rotate_seed)
    return split(A, B, pool=pool, rotate_b=R)

