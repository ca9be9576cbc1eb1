"""docs/developers.md lists every module under src/, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_sam_peft"


def _listed() -> set[str]:
    section = (ROOT / "docs" / "developers.md").read_text().split("## Every module", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+\.py)` \|", section, flags=re.MULTILINE))


def test_every_module_is_on_the_developers_map():
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    listed = _listed()
    assert sorted(modules - listed) == [], "add these to 'Every module' in docs/developers.md"
    assert sorted(listed - modules) == [], "these are listed in docs/developers.md but do not exist"
