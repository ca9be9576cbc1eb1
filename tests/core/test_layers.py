"""The import directions inside ``napari_sam_peft.core`` (the map in docs/developers.md).

Every import counts, also those inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "napari_sam_peft" / "core"
BASE = {"errors", "atomic", "cache_dir"}  # modules every package may use
#: what each package may import besides itself and the base modules
ALLOWED: dict[str, set[str]] = {
    "data": set(),
    "sam": set(),
    "peft": {"sam"},
    "annotation": {"sam", "peft", "data"},
    "instance": {"sam", "peft", "annotation"},
    "volume": {"sam", "peft", "annotation", "data", "instance"},
    "evaluation": {"sam", "peft", "annotation", "data", "instance", "volume"},
    "training": {"sam", "peft", "annotation", "data", "evaluation", "instance", "volume"},
    "cluster": {"training"},  # runs a training job elsewhere; the run itself is training's
    "export": {"sam", "peft", "data", "evaluation", "training"},  # a trained adapter, shared
}


def _unit(module: str) -> str:
    """The package (or base module) a dotted module under ``napari_sam_peft`` belongs to."""
    if module == "napari_sam_peft.__version__":
        return "errors"  # the package version is as basic as the error classes
    parts = module.split(".")
    if parts[:2] != ["napari_sam_peft", "core"]:
        return parts[1] if len(parts) > 1 else parts[0]  # cli, _qt, session...: outside core
    return parts[2] if len(parts) > 2 else "core"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import of this package in ``path``, relative ones resolved."""
    module = "napari_sam_peft." + ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
    package = module.split(".")[:-1]  # a module's package; __init__ is its own package's module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.startswith("napari_sam_peft")]
    return found


def _violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | BASE | {package}
    bad = []
    for path in sorted((CORE / package).rglob("*.py")):
        for line, name in _imports(path):
            unit = _unit(name)
            if unit not in allowed:
                bad.append(f"{path.relative_to(CORE)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_core_package_imports_only_the_packages_below_it(package):
    assert (CORE / package / "__init__.py").is_file()
    assert _violations(package) == []


def test_the_base_modules_import_nothing_of_core():
    for name in BASE:
        assert [i for _, i in _imports(CORE / f"{name}.py")] == [] or all(
            _unit(i) in BASE for _, i in _imports(CORE / f"{name}.py")
        )


def test_every_core_module_is_in_a_package_or_a_base_module():
    loose = {p.stem for p in CORE.glob("*.py")} - BASE - {"__init__"}
    assert loose == set(), f"put these in a package: {sorted(loose)}"


def test_the_check_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The test can fail: a lazy import of training inside a data module is reported."""
    fake = tmp_path / "core"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "bad.py").write_text("def f():\n    from ..training.job import TrainingJob\n")
    monkeypatch.setitem(globals(), "CORE", fake)
    assert _violations("data") == ["data/bad.py:2 imports napari_sam_peft.core.training.job"]


def _module_of(name: str) -> Path | None:
    """The file under core that a dotted import name (module or module.attribute) lives in."""
    parts = name.split(".")[2:]  # after napari_sam_peft.core
    while parts:
        path = CORE.joinpath(*parts).with_suffix(".py")
        if path.is_file():
            return path
        parts = parts[:-1]
    return None


def test_no_two_core_modules_import_each_other_even_lazily_or_for_types():
    """A cycle hides in a function-level or TYPE_CHECKING import; package __init__ files only re-export."""
    modules = [p for p in sorted(CORE.rglob("*.py")) if p.name != "__init__.py"]
    graph = {
        path: {m for _, name in _imports(path) if (m := _module_of(name)) is not None and m.name != "__init__.py"}
        - {path}
        for path in modules
    }
    cycles = set()
    for start in modules:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.add(" -> ".join(str(p.relative_to(CORE)) for p in (*trail, start)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    assert not cycles, sorted(cycles)[:4]
