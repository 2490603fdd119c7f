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
