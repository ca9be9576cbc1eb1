"""What a bioimage.io package says in words and pictures: lineage, documentation and cover image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..peft import Adapter
from ..sam.loading import LoadedModel

if TYPE_CHECKING:
    from ..training.runs import RunRecord


@dataclass
class PackageContent:
    """What a package says about its model besides the weights."""

    name: str
    test_image: np.ndarray
    test_labels: np.ndarray
    authors: list[str] = field(default_factory=lambda: ["napari-sam-peft user"])
    record: RunRecord | None = None  # the run's RunRecord, when the adapter has one beside it
    parents: list[str] = field(default_factory=list)  # hashes of the adapter's parent, its parent's ...


#: the outline colour of the test masks on the cover (RGB)
OUTLINE = (255, 200, 0)


def adapter_chain(adapter: Adapter, runs: list[RunRecord]) -> list[str]:
    """The hashes of ``adapter``'s parent, its parent's parent, ...: as far as the store's run records reach
    (the first is always the adapter's own record of its parent)."""
    chain: list[str] = []
    by_hash: dict[str, Adapter] = {}
    for run in runs:
        try:
            found = Adapter.load(run.adapter)
        except Exception:  # noqa: BLE001 - a run without a readable adapter just ends the chain there
            continue
        by_hash[found.identity] = found
    parent = adapter.parent_adapter
    while parent and parent not in chain:
        chain.append(parent)
        parent = by_hash[parent].parent_adapter if parent in by_hash else ""
    return chain


def lineage(adapter: Adapter, model: LoadedModel, content: PackageContent) -> dict[str, Any]:
    """The package's ``config.napari_sam_peft``: adapter, parents, base model, method and training."""
    record = content.record
    training: dict[str, Any] = {}
    if record is not None:
        training = {
            "steps": record.steps,
            "lr": record.lr,
            "best_validation_box_iou": record.best_score,
            "best_step": record.best_step,
            "validation": record.validation.get("measured_on"),
            "train_images": record.validation.get("train_images"),
            "train_objects": record.validation.get("train_objects"),
            "status": record.status,
            "continued": record.parent.get("replay", ""),
        }
        if record.evaluation is not None:
            training["evaluation"] = {"base": record.evaluation.base, "adapter": record.evaluation.adapter}
    return {
        "adapter": adapter.identity,
        "parents": content.parents,
        "base_model": {"name": model.identity.name, "content_hash": model.identity.content_hash},
        "architecture": model.architecture.name,
        "method": adapter.spec.describe(model.architecture.depth),
        "instance_decoder": adapter.has_decoder,
        "training_snapshot": adapter.training_snapshot,
        "metrics": adapter.metrics,
        "created": adapter.created,
        "package_version": adapter.package_version,
        "training": training,
    }


def documentation(adapter: Adapter, model: LoadedModel, content: PackageContent) -> str:
    """The package's README: what the model is, where it came from, how to use it, what to cite."""
    facts = lineage(adapter, model, content)
    parents = " -> ".join(p[:12] for p in content.parents) or "none (trained from the base model)"
    lines = [
        f"# {content.name}",
        "",
        f"{model.identity.name} ({model.architecture.name} architecture) finetuned with "
        f"{facts['method']} by napari-sam-peft, a napari plugin for "
        "human-in-the-loop annotation and parameter-efficient finetuning of Segment Anything. The adapter is "
        "merged into the base model's weights"
        + (
            ", and micro_sam's instance decoder (automatic instance segmentation) is included"
            if adapter.has_decoder
            else ""
        )
        + ".",  # fmt: skip
        "",
        "## Lineage",
        "",
        f"- adapter: `{adapter.identity}` (its sha256 over metadata and tensors, as napari-sam-peft names it)",
        f"- parents, newest first: {parents}",
        f"- base model: `{model.identity.name}` (`{model.identity.content_hash[:16]}`)",
        f"- store snapshot trained on: `{adapter.training_snapshot or 'not recorded'}`",
        f"- created {adapter.created} by napari-sam-peft {adapter.package_version}",
    ]
    training = facts["training"]
    if training:
        lines += ["", "## Training data and run", ""]
        lines += [
            f"- {key.replace('_', ' ')}: {f'{value:.3f}' if isinstance(value, float) and key != 'lr' else value}"
            for key, value in training.items()
            if key != "evaluation" and value not in ("", None)
        ]
        if "evaluation" in training:
            base, adapted = training["evaluation"]["base"], training["evaluation"]["adapter"]
            lines += ["", "| metric | base | finetuned |", "|---|---|---|"]
            lines += [
                f"| {name} | {base[name]:.3f} | {adapted[name]:.3f} |"
                for name in base
                if name in adapted and isinstance(base[name], float)
            ]
    lines += [
        "",
        "## Use",
        "",
        "Inputs and outputs are micro_sam's (`micro_sam.bioimageio.export_sam_model`): an RGB `image`, optional "
        "`box_prompts` (x0, y0, x1, y1), `point_prompts` (x, y) with `point_labels`, `mask_prompts` and "
        "precomputed `embeddings`; out come `masks`, `scores` and `embeddings`."
        + (
            " Called with the image alone, the model runs automatic instance segmentation."
            if adapter.has_decoder
            else ""
        ),  # fmt: skip
        "",
        "```python",
        "import bioimageio.core",
        'model = bioimageio.core.load_model_description("this_package.zip")',
        "bioimageio.core.test_model(model)  # runs the test tensors",
        "```",
        "",
        "## Cite",
        "",
        "- Teuber, Archit, Pape: Parameter Efficient Fine-Tuning of Segment Anything Model for Biomedical "
        "Imaging. MIDL 2025, PMLR 301 (2026). arXiv:2502.00418",
        "- Archit et al.: Segment Anything for Microscopy. Nature Methods (2025). doi:10.1038/s41592-024-02580-4",
        "- Kirillov et al.: Segment Anything. ICCV 2023. arXiv:2304.02643",
        "",
    ]
    return "\n".join(lines)


def cover_image(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], path: Path) -> Path:
    """The test image beside the same image with the test masks outlined (2:1, as bioimage.io asks)."""
    import imageio.v3 as iio
    from skimage.segmentation import find_boundaries

    image = inputs["image"][0].transpose(1, 2, 0).astype(np.float32)
    low, high = np.percentile(image, (1, 99.5))  # microscopy is often dim: stretch for the eye only
    image = (np.clip((image - low) / max(high - low, 1.0), 0, 1) * 255).astype(np.uint8)
    outlined = image.copy()
    for mask in outputs["masks"][0, :, 0]:
        edge = find_boundaries(mask.astype(bool), mode="thick")
        outlined[edge] = OUTLINE
    iio.imwrite(path, np.concatenate([image, outlined], axis=1))
    return path
