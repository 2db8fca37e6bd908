"""The hand-kept type stub python/lverse/_native.pyi names exactly what the native module
exports, method by method."""

import ast
from pathlib import Path

from lverse import _native

STUB = Path(__file__).resolve().parents[1] / "python" / "lverse" / "_native.pyi"


def stub_names():
    tree = ast.parse(STUB.read_text())
    top, classes = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            classes[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
            top.add(node.name)
        elif isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
    return top, classes


def test_stub_matches_native_module():
    top, classes = stub_names()
    exported = {name for name in dir(_native) if not name.startswith("_")} | {"__version__"}
    assert top == exported
    for name, methods in classes.items():
        native = {m for m in dir(getattr(_native, name)) if not m.startswith("_")}
        assert methods == native, name
