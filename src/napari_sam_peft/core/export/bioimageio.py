"""A finetuned model as a bioimage.io model package (spec 0.5), the way the field shares models.

:func:`export_bioimageio` merges an adapter into its base model and writes a package with micro_sam's
structure (``micro_sam.bioimageio.export_sam_model``): an RGB ``image`` input with optional
``box_prompts``, ``point_prompts``/``point_labels``, ``mask_prompts`` and ``embeddings`` inputs; ``masks``,
``scores`` and ``embeddings`` outputs; micro_sam's ``PredictorAdaptor`` as the architecture (here built
from the recorded architecture, so LiteMedSAM and the demo model export too: see
:mod:`.bioimageio_adaptor`). With an instance decoder the weights hold it as micro_sam's finetuned
checkpoints do, and the model called without prompts runs automatic instance segmentation.

The test tensors come from an annotated image of the store (its validation split first), the cover shows
the test masks on it, the description and documentation give the adapter's lineage (its hash and its
parents'), the method, base model and training data, and cite the paper.
The package is tested with ``bioimageio.core.test_model`` before it is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ... import __version__
from ..atomic import atomic_path
from ..errors import SamPeftError
from ..peft import Adapter
from ..sam.loading import LoadedModel
from .bioimageio_docs import PackageContent, cover_image, documentation, lineage
from .bioimageio_tensors import TestTensors, run_adaptor, test_inputs
from .merged import merged_checkpoint

#: the paper the methods come from, and micro_sam, which the package's structure and decoder are
CITATIONS = (
    ("Teuber, Archit, Pape: Parameter Efficient Fine-Tuning of Segment Anything Model for Biomedical Imaging. "
     "MIDL 2025, PMLR 301 (2026)", "https://arxiv.org/abs/2502.00418"),
    ("Archit et al.: Segment Anything for Microscopy. Nature Methods (2025)", "10.1038/s41592-024-02580-4"),
)  # fmt: skip


@dataclass
class ExportResult:
    """The package written, and what ``bioimageio.core.test_model`` said of it."""

    path: Path
    status: str
    with_decoder: bool
    details: list[str]


def export_bioimageio(
    adapter: Adapter, adapter_path: Path, model: LoadedModel, out: Path, content: PackageContent
) -> ExportResult:
    """Write the bioimage.io package of ``model`` + ``adapter`` to ``out`` (a .zip), tested.

    Raises
    ------
    SamPeftError
        For an output that is not a .zip, an adapter that cannot be merged or is of another base model,
        a test image without objects, or a package that fails bioimage.io's test (nothing is written).
    """
    if out.suffix != ".zip":
        raise SamPeftError(f"The bioimage.io package must be a .zip file, not {out.name!r}.")
    checkpoint = merged_checkpoint(adapter, model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        staged = folder / "package.zip"
        try:
            import bioimageio.core
            from bioimageio.spec import save_bioimageio_package

            description = _describe(adapter, adapter_path, model, checkpoint, content, folder)
            save_bioimageio_package(description, output_path=staged)
            summary = bioimageio.core.test_model(staged, devices=["cpu"])
        except Exception as err:  # noqa: BLE001 - whatever bioimageio's libraries raise is one line for the user
            raise SamPeftError(bioimageio_failure(err)) from err
        details = [f"{d.name}: {d.status}" for d in summary.details if d.status != "passed"]
        if summary.status != "passed":
            errors = [e.msg for d in summary.details for e in d.errors][:3]
            raise SamPeftError(
                "The bioimage.io package failed bioimage.io's own test, so it was not written: "
                + "; ".join(errors)
            )
        with atomic_path(out) as target:
            shutil.copyfile(staged, target)
    return ExportResult(out, str(summary.status), adapter.has_decoder, details)


def bioimageio_failure(err: BaseException) -> str:
    """One line for a failure inside bioimageio's libraries: what failed, with which versions, what to do."""
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for package in ("bioimageio.spec", "bioimageio.core", "pydantic"):
        try:
            versions.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            versions.append(f"no {package}")
    errors = getattr(err, "errors", None)
    reason = str(errors()[0].get("msg", err)) if callable(errors) and errors() else str(err)
    reason = " ".join(reason.split())[:240] or type(err).__name__
    return (
        f"Writing the bioimage.io package failed ({type(err).__name__}: {reason}) with "
        f"{', '.join(versions)}. Nothing was written. Install the versions napari-sam-peft is tested with "
        "(bash scripts/install.sh in its source folder, or pip install -r requirements-lock.txt), or export "
        "a checkpoint for micro_sam with --out MERGED.pth."
    )


def _describe(
    adapter: Adapter,
    adapter_path: Path,
    model: LoadedModel,
    checkpoint: dict[str, Any],
    content: PackageContent,
    folder: Path,
) -> Any:
    """The spec 0.5 model description, its files written into ``folder``."""
    import bioimageio.spec.model.v0_5 as spec

    from .bioimageio_adaptor import package_source, sam_peft_predictor_adaptor

    weights = folder / "weights.pt"
    torch.save(checkpoint, weights)
    architecture_json = model.architecture.to_json()
    adaptor = sam_peft_predictor_adaptor(architecture_json)
    adaptor.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    adaptor.eval()
    prompt_encoder = model.sam.prompt_encoder
    embedding_size = int(prompt_encoder.image_embedding_size[0])
    channels = int(prompt_encoder.embed_dim)  # 256 for SAM's own sizes
    inputs = test_inputs(content.test_image, content.test_labels, int(model.sam.image_encoder.img_size),
                         int(prompt_encoder.mask_input_size[0]))  # fmt: skip
    outputs = run_adaptor(adaptor, inputs)
    input_paths, output_paths = TestTensors(inputs, outputs).save(folder)
    input_paths["embeddings"] = output_paths["embeddings"]  # as micro_sam's: the image's own, precomputed
    cover = cover_image(inputs, outputs, folder / "cover.png")
    docs = folder / "README.md"
    docs.write_text(documentation(adapter, model, content))
    environment = folder / "environment.yaml"
    environment.write_text(
        "name: napari-sam-peft\nchannels: [conda-forge]\ndependencies:\n  - python>=3.11\n  - pip\n  - pip:\n"
        f"    - napari-sam-peft>={__version__}\n    - micro_sam>=1.8\n    - torch\n"
    )
    adaptor_source = folder / "sam_peft_adaptor.py"
    adaptor_source.write_text(package_source())
    weight_description = spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=weights,
            architecture=spec.ArchitectureFromFileDescr(
                source=adaptor_source,
                callable=spec.Identifier("sam_peft_predictor_adaptor"),
                kwargs={"architecture": architecture_json},
            ),
            pytorch_version=spec.Version(torch.__version__.split("+")[0]),
            dependencies=spec.FileDescr(source=environment),
        )
    )
    return spec.ModelDescr(
        name=content.name,
        description=_one_line(adapter, model, content),
        authors=[spec.Author(name=author) for author in content.authors],
        cite=[
            spec.CiteEntry(
                text=text, **({"url": spec.HttpUrl(ref)} if ref.startswith("http") else {"doi": spec.Doi(ref)})
            )
            for text, ref in CITATIONS
        ],
        license=spec.LicenseId("CC-BY-4.0"),
        documentation=spec.FileDescr(source=docs),
        covers=[spec.FileDescr(source=cover)],
        tags=["segment-anything", "peft", adapter.spec.method, "instance-segmentation", "napari-sam-peft"],
        inputs=_input_descriptions(
            spec, input_paths, embedding_size, int(prompt_encoder.mask_input_size[0]), channels
        ),
        outputs=_output_descriptions(spec, output_paths, embedding_size, channels),
        weights=weight_description,
        config=spec.Config(
            bioimageio=spec.BioimageioConfig(
                reproducibility_tolerance=[  # as micro_sam's: raw embeddings differ slightly across machines
                    spec.ReproducibilityTolerance(
                        mismatched_elements_per_million=1000, output_ids=[spec.TensorId(t)]
                    )
                    for t in ("embeddings", "masks")
                ]
            ),
            napari_sam_peft=_jsonable(lineage(adapter, model, content)),  # type: ignore[call-arg]  # extra keys
        ),
    )


def _jsonable(values: dict[str, Any]) -> Any:
    return json.loads(json.dumps(values, default=str))


def _one_line(adapter: Adapter, model: LoadedModel, content: PackageContent) -> str:
    parents = f", continued from {content.parents[0][:12]}" if content.parents else ""
    record = content.record
    data = ""
    if record is not None and record.validation:
        v = record.validation
        images = v.get("train_images")
        data = f"; trained on {v.get('train_objects')} objects in {images} image{'' if images == 1 else 's'}"
    return (
        f"{model.identity.name} finetuned with {adapter.spec.describe(model.architecture.depth)} by "
        f"napari-sam-peft (adapter {adapter.identity[:12]}{parents}){data}"
    )


def _input_descriptions(
    spec: Any, paths: dict[str, Path], embedding_size: int, mask_size: int, channels: int
) -> list[Any]:
    """micro_sam's inputs: the image, then the optional prompts and embeddings."""
    any_size = spec.ParameterizedSize(min=1, step=1)
    batch = spec.BatchAxis(size=1)

    def objects() -> Any:
        return spec.IndexInputAxis(id=spec.AxisId("object"), size=any_size)

    def tensor(name: str, axes: list[Any], dtype: str, optional: bool = True) -> Any:
        return spec.InputTensorDescr(id=spec.TensorId(name), optional=optional, axes=[batch, *axes],
                                     test_tensor=spec.FileDescr(source=paths[name]),
                                     data=spec.IntervalOrRatioDataDescr(type=dtype))  # fmt: skip

    def space(axis: str, size: Any) -> Any:
        return spec.SpaceInputAxis(id=spec.AxisId(axis), size=size)

    points = spec.IndexInputAxis(id=spec.AxisId("point"), size=any_size)
    return [
        tensor(
            "image",
            [
                spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in "RGB"]),
                space("y", any_size),
                space("x", any_size),
            ],
            "uint8",
            optional=False,
        ),  # fmt: skip
        tensor(
            "box_prompts",
            [objects(), spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in "hwxy"])],
            "int64",
        ),  # fmt: skip
        tensor(
            "point_prompts",
            [objects(), points, spec.ChannelAxis(channel_names=[spec.Identifier(c) for c in "xy"])],
            "int64",
        ),  # fmt: skip
        tensor("point_labels", [objects(), spec.IndexInputAxis(id=spec.AxisId("point"), size=any_size)], "int64"),
        tensor(
            "mask_prompts",
            [
                objects(),
                spec.ChannelAxis(channel_names=[spec.Identifier("channel")]),
                space("y", mask_size),
                space("x", mask_size),
            ],
            "float32",
        ),  # fmt: skip
        tensor(
            "embeddings",
            [
                spec.ChannelAxis(channel_names=[spec.Identifier(f"c{i}") for i in range(channels)]),
                space("y", embedding_size),
                space("x", embedding_size),
            ],
            "float32",
        ),  # fmt: skip
    ]


def _output_descriptions(spec: Any, paths: dict[str, Path], embedding_size: int, channels: int) -> list[Any]:
    """micro_sam's outputs: masks and scores per object, and the image embeddings."""
    batch = spec.BatchAxis(size=1)
    objects = spec.IndexOutputAxis(id=spec.AxisId("object"), size=spec.DataDependentSize())
    mask_channel = spec.ChannelAxis(channel_names=[spec.Identifier("mask")])

    def like_image(axis: str) -> Any:
        size = spec.SizeReference(tensor_id=spec.TensorId("image"), axis_id=spec.AxisId(axis))
        return spec.SpaceOutputAxis(id=spec.AxisId(axis), size=size)

    def tensor(name: str, axes: list[Any], dtype: str) -> Any:
        return spec.OutputTensorDescr(id=spec.TensorId(name), axes=[batch, *axes],
                                      test_tensor=spec.FileDescr(source=paths[name]),
                                      data=spec.IntervalOrRatioDataDescr(type=dtype))  # fmt: skip

    return [
        tensor("masks", [objects, mask_channel, like_image("y"), like_image("x")], "uint8"),
        tensor(
            "scores",
            [spec.IndexOutputAxis(id=spec.AxisId("object"), size=spec.DataDependentSize()), mask_channel],
            "float32",
        ),  # fmt: skip
        tensor(
            "embeddings",
            [
                spec.ChannelAxis(channel_names=[spec.Identifier(f"c{i}") for i in range(channels)]),
                spec.SpaceOutputAxis(id=spec.AxisId("y"), size=embedding_size),
                spec.SpaceOutputAxis(id=spec.AxisId("x"), size=embedding_size),
            ],
            "float32",
        ),  # fmt: skip
    ]


def default_authors() -> list[str]:
    """Who the package names as its author by default: the user name of this account."""
    return [os.environ.get("USER") or os.environ.get("USERNAME") or "napari-sam-peft user"]
