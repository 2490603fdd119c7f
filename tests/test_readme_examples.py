"""The README's store-migration examples run as written on the shipped sample, and each
migrated store answers B queries with the right ids."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks(heading):
    text = README.read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end > 0 else None]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


@pytest.mark.skipif(not README.exists(), reason="runs from a source checkout")
def test_store_migration_examples_run_and_find_the_right_ids(tmp_path, monkeypatch):
    for module in ("faiss", "lancedb", "qdrant_client"):
        pytest.importorskip(module)
    blocks = _section_blocks("## Migrating a vector store")
    assert len(blocks) == 4, "the setup block and one block per store"
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    from minivec2vec.stores.qdrant_collection import close_clients
    close_clients()
    found = dict(re.findall(r"^(\w+) top-1 ([0-9.]+)$", out.getvalue(), flags=re.M))
    assert set(found) == {"faiss", "lance", "qdrant"}, out.getvalue()
    assert all(float(v) >= 0.95 for v in found.values()), found
