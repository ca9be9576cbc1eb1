"""What a user installs: every import of src/ declared (deptry, as the test command runs it), and the lock of
tested versions in step with pyproject.toml's ranges."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _deptry(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deptry", "src", "--no-ansi"], cwd=folder, capture_output=True, text=True
    )


@pytest.fixture
def project_copy(tmp_path):
    """pyproject.toml and src/ in a folder of their own, to plant imports in."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return tmp_path


def test_every_import_of_src_is_declared_and_every_dependency_used():
    result = _deptry(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("planted", "rule"),
    [
        ("import yaml", "DEP003 'yaml' imported but it is a transitive dependency"),  # arrives only through others
        ("import not_a_package_anyone_installs", "DEP001 'not_a_package_anyone_installs' imported but missing"),
    ],
)
def test_the_dependency_check_fails_on_an_undeclared_import(project_copy, planted, rule):
    module = project_copy / "src" / "napari_sam_peft" / "core" / "errors.py"
    module.write_text(module.read_text() + f"\n{planted}\n")
    result = _deptry(project_copy)
    assert result.returncode == 1 and rule in result.stderr, result.stdout + result.stderr


def test_the_dependency_check_fails_on_a_declared_package_nothing_imports(project_copy):
    pyproject = project_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('    "zarr>=3",\n', '    "zarr>=3",\n    "rich>=10",\n'))
    result = _deptry(project_copy)
    assert result.returncode == 1 and "DEP002 'rich' defined as a dependency but not used" in result.stderr


def _locked() -> dict[str, str]:
    """Package name -> version pinned in requirements-lock.txt."""
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = Requirement(line.split(" \\")[0].split(" ;")[0])
            pins[_normal(requirement.name)] = str(next(iter(requirement.specifier)).version)
    return pins


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_lock_pins_every_dependency_inside_its_range():
    """An edited range without `bash scripts/lock.sh` after it fails here, before a user installs the stale
    lock."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _locked()
    declared = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    outside = {
        str(r): pins.get(_normal(r.name), "not locked")
        for r in declared
        if _normal(r.name) not in pins or pins[_normal(r.name)] not in r.specifier
    }
    assert not outside, f"run `bash scripts/lock.sh`: the lock does not fit these ranges: {outside}"
