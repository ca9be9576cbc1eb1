"""Habits that keep the code readable: small modules, short functions (see docs/developers.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_sam_peft"
MAX_MODULE_LINES = 400
MAX_FUNCTION_STATEMENTS = 60


def statements(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Statements in a function's body, nested blocks included (a nested def counts as one)."""
    count = 0
    todo: list[ast.stmt] = list(function.body)
    while todo:
        node = todo.pop()
        count += 1
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                todo.append(child)
            elif isinstance(child, ast.excepthandler | ast.match_case):
                todo.extend(child.body)
    return count


def long_functions(source: str, name: str) -> list[str]:
    """The functions of ``source`` (a module called ``name`` in the message) over the limit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and statements(node) > MAX_FUNCTION_STATEMENTS:
            found.append(f"{name}:{node.lineno} {node.name} ({statements(node)} statements)")
    return found


def test_no_module_is_over_400_lines():
    sizes = {p.relative_to(SRC): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    long = [f"{path} ({lines})" for path, lines in sizes.items() if lines > MAX_MODULE_LINES]
    assert long == [], "split these modules: each holds more than one concept"


def test_no_function_is_over_60_statements():
    found = [f for p in sorted(SRC.rglob("*.py")) for f in long_functions(p.read_text(), str(p.relative_to(SRC)))]
    assert found == []


def test_the_statement_count_sees_a_long_function():
    def module(count: int) -> str:
        return "def f():\n" + "\n".join(f"    x{i} = {i}" for i in range(count)) + "\n"

    assert statements(ast.parse(module(61)).body[0]) == 61
    assert long_functions(module(61), "synthetic.py") == ["synthetic.py:1 f (61 statements)"]
    assert long_functions(module(60), "synthetic.py") == []


def undocumented(path: Path) -> list[str]:
    """Public functions and classes (methods included) without a docstring."""
    found = []

    def visit(nodes: list[ast.stmt], prefix: str) -> None:
        for node in nodes:
            if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
            ) and not node.name.startswith("_"):
                if ast.get_docstring(node) is None:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {prefix}{node.name}")
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(path.read_text()).body, "")
    return found


def test_every_public_function_and_class_of_core_has_a_docstring():
    assert [f for p in sorted((SRC / "core").rglob("*.py")) for f in undocumented(p)] == []
