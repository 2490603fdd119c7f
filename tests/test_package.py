"""The package's own facts: one version, a type stub that matches the compiled module, the
public exceptions module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import minivec2vec
from minivec2vec import _core, exceptions

ROOT = Path(__file__).resolve().parents[1]
STUB = Path(minivec2vec.__file__).with_name("_core.pyi")


def test_the_stub_declares_exactly_what_the_compiled_module_exports():
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    declared = {node.name for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    exported = {name for name in dir(_core) if not name.startswith("_")}
    assert declared == exported
    members = next(node for node in tree.body
                   if isinstance(node, ast.ClassDef) and node.name == "Int8Database")
    stub_members = {getattr(n, "name", None) or n.target.id for n in members.body
                    if isinstance(n, (ast.FunctionDef, ast.AnnAssign))} - {"__init__"}
    assert stub_members == {n for n in dir(_core.Int8Database) if not n.startswith("_")}


def test_the_version_is_written_once():
    from minivec2vec._version import __version__
    assert minivec2vec.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    pyproject = ROOT / "pyproject.toml"
    if pyproject.exists():  # a source checkout: the metadata reads the same module
        text = pyproject.read_text(encoding="utf-8")
        assert 'dynamic = ["version"]' in text
        assert re.search(r'^version\s*=\s*"', text, flags=re.M) is None
        assert 'attr = "minivec2vec._version.__version__"' in text


def test_every_exception_and_the_warning_live_in_the_public_module():
    for name in minivec2vec.__all__:
        obj = getattr(minivec2vec, name)
        if isinstance(obj, type) and issubclass(obj, (Exception, Warning)):
            assert obj.__module__ == "minivec2vec.exceptions", name
            assert getattr(exceptions, name) is obj
    assert issubclass(minivec2vec.AlignmentWarning, UserWarning)
    from minivec2vec.stages.confidence import AlignmentWarning  # the older import path still works
    assert AlignmentWarning is minivec2vec.AlignmentWarning
