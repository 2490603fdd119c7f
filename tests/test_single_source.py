"""Values that are declared once and read everywhere else: the block sizes and the estimator's
parameters."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "minivec2vec"

# the literals that are declared once; the other places where the same number is a different
# quantity are listed with the reason
_DECLARED_ONCE = {"65536": "_runtime/blocks.py", "8192": "_runtime/blocks.py"}
_OTHER_QUANTITIES = {
    ("65536", "kernels/knn.py"): "the int8 engines' feature bound, not a block size",
    ("8192", "evaluation/metrics.py"): "the evaluation protocol's test pool (TEST_POOL)",
}


@pytest.mark.parametrize("literal", sorted(_DECLARED_ONCE))
def test_block_sizes_are_written_in_one_module(literal):
    pattern = re.compile(rf"(?<![\w.]){literal[:-3]}_?{literal[-3:]}(?![\w.])")
    places = sorted(str(path.relative_to(SRC)) for path in SRC.rglob("*.py")
                    if pattern.search(path.read_text()))
    expected = sorted([_DECLARED_ONCE[literal]] + [path for (lit, path) in _OTHER_QUANTITIES
                                                   if lit == literal])
    assert places == expected


def test_the_block_sizes_and_the_test_pool():
    from minivec2vec._runtime import blocks, memory
    from minivec2vec.evaluation import protocol
    from minivec2vec.kernels import rows
    assert (blocks.BLOCK_ROWS, blocks.SUM_ROWS, protocol.TEST_POOL) == (65536, 8192, 8192)
    assert memory.MAX_BLOCK_ROWS == rows._BLOCK_ROWS == blocks.BLOCK_ROWS
    assert memory.MIN_SCAN_ROWS == blocks.SUM_ROWS


# ------------------------------------------------------------------------- parameters
# a value each parameter refuses, with the exception fit raises for it (fit checks every one
# before any stage runs; the declared order of PARAMETERS is the signature's)
_BAD_VALUES = {
    "n_runs": 0, "n_clusters": 2, "anchor_sample": 0, "qap_restarts": 0, "n_neighbors": 0,
    "refine_iter": -1, "refine_sample": 0, "refine_neighbors": 0, "alpha": 1.5,
    "transport_iter": -1, "transport_rows": 0, "assignment_iter": -1, "assignment_rows": 0,
    "refine_clusters": -1, "mutual_iter": -1, "mutual_sample": 0, "mutual_final_sample": 0,
    "csls_k": 0, "reproject": "yes", "random_state": "x", "n_threads": 0, "memory_limit": "lots",
    "fit_sample": 0, "n_restarts": 0, "extra_restarts": -1, "confidence_sample": 0,
    "known_pairs_weight": -1.0, "verbose": "yes",
}


def test_the_signature_is_the_declaration():
    import inspect
    from minivec2vec import MiniVec2Vec
    from minivec2vec._runtime.parameters import PARAMETERS
    signature = inspect.signature(MiniVec2Vec.__init__).parameters
    declared = [(p.name, p.default) for p in PARAMETERS]
    assert [(n, s.default) for n, s in signature.items() if n != "self"] == declared
    assert all(s.kind is inspect.Parameter.KEYWORD_ONLY for n, s in signature.items()
               if n != "self")


def test_every_parameter_is_in_get_params_the_cli_and_the_map_file(tmp_path, rotation_map):
    from minivec2vec import MiniVec2Vec
    from minivec2vec._runtime.parameters import PARAMETERS
    from minivec2vec.cli import build_parser
    from minivec2vec.io.mapfile import read_map
    names = [p.name for p in PARAMETERS]
    assert list(MiniVec2Vec().get_params()) == names
    assert MiniVec2Vec().get_params() == {p.name: p.default for p in PARAMETERS}
    fit_parser = build_parser()._subparsers._group_actions[0].choices["fit"]
    flags = {flag for action in fit_parser._actions for flag in action.option_strings}
    assert {p.cli_flag for p in PARAMETERS} <= flags
    saved_params, _, _ = read_map(rotation_map)
    assert sorted(saved_params) == sorted(names)
    # a numeric flag's default is the estimator's
    args = fit_parser.parse_args(["a.npy", "b.npy", "-o", str(tmp_path / "m.map")])
    for p in PARAMETERS:
        if p.kind in ("int", "float"):
            assert getattr(args, p.name) == p.default


def test_every_parameter_is_validated():
    import numpy as np
    from minivec2vec import InvalidParameterError, MiniVec2Vec, ParameterTypeError
    from minivec2vec._runtime.parameters import PARAMETERS
    assert set(_BAD_VALUES) == {p.name for p in PARAMETERS}
    X = np.random.default_rng(0).standard_normal((1200, 8)).astype(np.float32)
    for p in PARAMETERS:
        p.check(p.default)
        with pytest.raises((InvalidParameterError, ParameterTypeError), match=p.name):
            p.check(_BAD_VALUES[p.name])
        # and the estimator refuses it before any work
        with pytest.raises((InvalidParameterError, ParameterTypeError), match=p.name):
            MiniVec2Vec(**{p.name: _BAD_VALUES[p.name]}).fit(X, X)
