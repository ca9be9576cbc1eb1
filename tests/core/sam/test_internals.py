"""Every private name of micro_sam, segment_anything, sam2 and torch is used in one module, which says why."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from napari_sam_peft.core.sam import internals

SRC = Path(__file__).resolve().parents[3] / "src" / "napari_sam_peft"
PACKAGE = "napari_sam_peft"


def _ours(paths: list[Path]) -> set[str]:
    """Names the package defines itself: functions, classes, variables, arguments, ``self.`` attributes."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return names


def private_uses(path: Path, ours: set[str]) -> list[str]:
    """Private names of other libraries ``path`` touches: ``x._name`` where the package never defines
    ``_name``, ``from lib import _name`` or ``from lib._private import``, and ``__class__`` assignment."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            if node.attr == "__class__" and isinstance(node.ctx, ast.Store):
                found.append(f"{node.lineno}: __class__ =")
            elif node.attr.startswith("_") and not node.attr.startswith("__") and node.attr not in ours:
                found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith(PACKAGE):
            module = node.module or ""
            if any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                found.append(f"{node.lineno}: from {module}")
            found += [f"{node.lineno}: {module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_private_names_of_other_libraries_are_used_in_the_internals_module_only():
    paths = sorted(SRC.rglob("*.py"))
    ours = _ours(paths)
    home = Path(internals.__file__)
    elsewhere = {str(p.relative_to(SRC)): uses for p in paths if p != home and (uses := private_uses(p, ours))}
    assert elsewhere == {}, "move these into core/sam/internals.py, with why in its docstring"
    used = sorted({use.split(": ", 1)[1] for use in private_uses(home, ours)})
    assert used == [
        "._cached_input",
        "._cached_original_size",
        "._forward_impl",
        "._get_pos_embed",
        "._hash",
        "._is_amx_tile_supported",
        "._is_avx512_bf16_supported",
        "._prepare_backbone_features",
        "._to_mask_data",
        "._version",
        "__class__ =",
        "micro_sam.util._create_dataset_with_data",
        "micro_sam.util._load_checkpoint",
        "micro_sam.util._to_image",
        "micro_sam.util._write_embedding_signature",
    ]
    doc = internals.__doc__ or ""
    assert all(use.split(".")[-1].removesuffix(" =") in doc for use in used)  # each says why


def test_the_scan_finds_a_private_name_and_a_class_swap(tmp_path):
    """The rule's own check: a module that calls a library's private method or swaps a class is caught."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def f(decoder, module, cls):\n    decoder._forward_impl(1)\n    module.__class__ = cls\n")
    found = private_uses(sneaky, _ours(sorted(SRC.rglob("*.py"))))
    assert sorted(found) == ["2: ._forward_impl", "3: __class__ ="]


def test_to_image_gives_micro_sams_three_scaled_channels():
    grey = np.arange(12, dtype=np.uint16).reshape(3, 4) * 100
    rgb = internals.to_image(grey)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], rgb[..., 0]) for c in range(3))
    assert rgb.min() == 0 and rgb.max() >= 254 and np.all(np.diff(rgb[..., 0].ravel()) > 0)
