"""Every private micro_sam function is called from one module, which says why each is needed."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from napari_sam_peft.core.sam import micro_sam_internals

SRC = Path(__file__).resolve().parents[3] / "src" / "napari_sam_peft"


def _private_micro_sam_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("micro_sam"):
            found += [f"{node.module}.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_"):
            if node.value.id in ("micro_sam", "util") and node.attr != "__version__":
                found.append(f"{node.value.id}.{node.attr}")
    return found


def test_private_micro_sam_calls_live_in_one_module():
    home = Path(micro_sam_internals.__file__)
    elsewhere = {
        str(p.relative_to(SRC)): names
        for p in SRC.rglob("*.py")
        if p != home and (names := _private_micro_sam_imports(p))
    }
    assert elsewhere == {}
    used = _private_micro_sam_imports(home)
    assert sorted(used) == [
        "micro_sam.util._create_dataset_with_data",
        "micro_sam.util._load_checkpoint",
        "micro_sam.util._to_image",
        "micro_sam.util._write_embedding_signature",
    ]
    assert all(name.rsplit(".", 1)[1] in (micro_sam_internals.__doc__ or "") for name in used)


def test_to_image_gives_micro_sams_three_scaled_channels():
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    rgb = micro_sam_internals.to_image(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], rgb[..., 0]) for c in range(3))
    assert rgb.min() == 0 and rgb.max() >= 254 and np.all(np.diff(rgb[..., 0].ravel()) > 0)
