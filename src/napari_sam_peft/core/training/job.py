"""The schema of a training run: one dataclass whose fields say everything about themselves (an
:class:`Option` each), from which come ``train``'s options, the worker's command line, the Finetune
widget's settings and docs/cluster.md's table. A job is frozen: what a run resolves is its
:class:`~.plan.Schedule`, never written back into the job.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SamPeftError
from ..peft import PRESETS, PeftSpec, spec_from_preset
from ..sam.devices import DEVICE_CHOICES
from ..sam.precision import PRECISION_CHOICES
from .recipe import RECIPE_CHOICES
from .runs import new_run_dir

if TYPE_CHECKING:
    from ..sam.loading import LoadedModel


@dataclass(frozen=True)
class Option:
    """How one :class:`TrainingJob` field is offered: on the command line and in the Finetune widget.

    ``help`` says what the field sets; the command line adds its default.
    ``choices`` are enforced on the command line only when ``strict`` (``--device cuda:1`` is fine;
    the widget offers the choices). A field with a ``label`` is shown in the widget, with
    ``tooltip`` (or the help), ``minimum``/``maximum`` for numbers, and ``widget_default`` as its
    first value (None: the field's default).
    """

    help: str
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    strict: bool = True
    positional: bool = False
    label: str = ""
    tooltip: str = ""
    minimum: int | None = None
    maximum: int | None = None
    widget_default: Any = None


def _option(default: Any = MISSING, **option: Any) -> Any:
    """A dataclass field with an :class:`Option` in its metadata."""
    return field(default=default, metadata={"option": Option(**option)})


@dataclass(frozen=True)
class TrainingJob:
    """Everything a run needs; it round-trips through ``napari-sam-peft train`` arguments and ``run.json``.

    Frozen: a changed job is a new one (``dataclasses.replace``); :meth:`with_run_folder` names the
    adapter file of a new run.
    """

    store: Path = _option(
        help="annotation store (.sampeft.zarr) whose training images are trained on",
        metavar="STORE",
        positional=True,
    )
    model: str = _option(help="base model: 'demo', a registry name or a checkpoint file", metavar="NAME|FILE")
    preset: str = _option(help="PEFT preset (see napari-sam-peft methods)", choices=tuple(PRESETS), label="preset")
    blocks: str | None = _option(
        None,
        help="encoder blocks, e.g. 'last 1', '6-11' (preset default)",
        label="blocks",
        tooltip="Encoder blocks to adapt: 'last 1', '6-11', 'late', 'all'; empty = preset default",
    )
    rank: int | None = _option(
        None,
        help="LoRA/FacT rank (preset default)",
        label="rank",
        tooltip="LoRA/FacT rank; empty = the preset's default",
        minimum=0,
        maximum=256,
    )
    lr: float | None = _option(
        None,
        help="AdamW learning rate (default: the rate recommended for the model and method; the run says which)",
        label="learning rate",
        tooltip="AdamW learning rate; empty = the rate recommended for the model and method",
    )
    steps: int | None = _option(
        None,
        help="training steps, one image each (default: the recipe's passes over the training objects, 25 for "
        "the paper's and 10 for the CPU's, 100-1000 steps; the run says which)",
        label="steps",
        tooltip="Training steps, one image each; empty = the recipe's passes over the training objects (paper: "
        "25, CPU: 10; 100-1000 steps)",
        minimum=0,
        maximum=1_000_000,
    )
    recipe: str = _option(
        "auto",
        help="how steps spend the compute: 'paper' (8 objects and 8 correction passes per step, the paper's), "
        "'cpu' (4 and 4 at 3x the rate, validation every 5 steps, 10 passes over the objects) or auto (cpu on a "
        "CPU, paper elsewhere); objects, corrections, validation, rate and steps given override it",
        choices=RECIPE_CHOICES,
        label="recipe",
    )
    objects_per_image: int | None = _option(
        None,
        help="objects per step (default: the recipe's, paper 8, CPU 4)",
        label="objects / step",
        minimum=1,
        maximum=64,
    )
    sub_iterations: int | None = _option(
        None,
        help="correction sub-iterations per step (default: the recipe's, the paper's 8 or the CPU recipe's 4); "
        "fewer make a step faster",
        label="corrections / step",
        minimum=0,
        maximum=16,
    )
    validate_every: int | None = _option(
        None,
        help="steps between validations (default: the recipe's, 25 for the paper's, 5 for the CPU's)",
        label="validate every",
        minimum=1,
        maximum=100_000,
    )
    device: str = _option(
        "auto",
        help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu",
        choices=DEVICE_CHOICES,
        strict=False,
        label="device",
    )
    precision: str = _option(
        "auto",
        help="auto (the fastest of the precisions the hardware computes natively, as a short probe of the model "
        "measures it on the machine that trains; float32 where nothing else is native or faster), fp32, bf16 "
        "or fp16; adapters are saved in float32 either way",
        choices=PRECISION_CHOICES,
        label="precision",
        tooltip="auto = the fastest precision a short probe of the model measured on this machine "
        "(bfloat16 or float16 only where native and faster than float32); the status line says which",
    )
    with_decoder: bool = _option(
        False,
        help="also train micro_sam's instance decoder (automatic instance segmentation, AIS) with the adapter, "
        "from the store's instance labels; it is saved in the adapter file",
        label="Train the instance decoder (AIS)",
        tooltip="Train an automatic-segmentation decoder with the adapter, so the next images are "
        "pre-segmented by the finetuned model",
        widget_default=True,
    )
    evaluate: bool = _option(
        False,
        help="at the end, evaluate base vs adapter (mSA) on the validation images (or those held out)",
        label="Evaluate at the end",
        tooltip="Compare base model and adapter (mSA) when the run ends",
        widget_default=True,
    )
    seed: int = _option(0, help="seeds the sampling and which data is held out")
    out: Path | None = _option(
        None,
        help="the adapter file, rewritten at each improvement (default: a new run folder next to the store)",
        metavar="ADAPTER.safetensors",
    )
    cache_dir: Path | None = _option(None, help="embedding cache to reuse (frozen-encoder presets)")
    from_adapter: Path | None = _option(
        None,
        help="continue from this adapter (and its instance decoder) instead of the base model: same base model, "
        "preset, blocks and rank; images committed since it are drawn more often, a smaller rate and fewer "
        "steps are recommended, and the new adapter names it as its parent",
        metavar="ADAPTER.safetensors",
    )
    cluster: str | None = _option(
        None,
        help="train on a Dask cluster: its scheduler's address (tcp://host:8786, tls://host:8786); the store's "
        "files go to a worker, events and each best adapter come back here (see docs/cluster.md)",
        metavar="ADDRESS",
    )
    scheduler_file: Path | None = _option(
        None,
        help="train on the Dask cluster whose scheduler wrote this file (dask scheduler --scheduler-file)",
        metavar="FILE",
    )
    cluster_gpu: bool = _option(False, help="on the cluster, train on a worker with a GPU (refused if none has)")
    tls_ca_file: Path | None = _option(None, help="TLS to the cluster: the certificate authority (PEM)")
    tls_cert: Path | None = _option(None, help="TLS to the cluster: this client's certificate (PEM)", metavar="F")
    tls_key: Path | None = _option(None, help="TLS to the cluster: this client's private key (PEM)", metavar="F")

    @property
    def on_a_cluster(self) -> bool:
        """Whether the job names a Dask cluster to train on (``cluster`` or ``scheduler_file``)."""
        return bool(self.cluster or self.scheduler_file)

    def on_this_machine(self) -> TrainingJob:
        """The same training with no cluster named: what a cluster's worker runs (:data:`TARGET_FIELDS`)."""
        return replace(
            self,
            cluster=None,
            scheduler_file=None,
            cluster_gpu=False,
            tls_ca_file=None,
            tls_cert=None,
            tls_key=None,
        )

    def with_run_folder(self) -> TrainingJob:
        """This job with its adapter file named: without ``out``, in a new run folder made next to the store."""
        if self.out is not None:
            return self
        return replace(self, out=new_run_dir(self.store, self.preset) / "adapter.safetensors")

    @property
    def adapter_path(self) -> Path:
        """The adapter file (see :meth:`with_run_folder`).

        Raises
        ------
        ValueError
            If the job names none yet.
        """
        if self.out is None:
            raise ValueError("The job names no adapter file yet: call with_run_folder() first.")
        return Path(self.out)

    def to_json(self) -> dict[str, Any]:
        """The job as ``run.json`` keeps it (paths as text)."""
        return {
            f.name: str(v) if isinstance(v, Path) else v for f in fields(self) for v in [getattr(self, f.name)]
        }

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> TrainingJob:
        """The job of ``run.json`` values (keys it does not know are ignored; paths become paths).

        Raises
        ------
        TypeError
            Without the fields every job names (store, model, preset).
        """
        known: dict[str, Any] = {}
        for job_field in job_fields():
            if job_field.name in values:
                value = values[job_field.name]
                known[job_field.name] = Path(value) if job_field.type is Path and value is not None else value
        return cls(**known)

    def spec(self, depth: int) -> PeftSpec:
        """The PEFT spec this job trains on a model of ``depth`` encoder blocks (see :func:`peft_spec`)."""
        return peft_spec(self.preset, depth, self.blocks, self.rank)

    def to_argv(self) -> list[str]:
        """The ``napari-sam-peft train`` arguments that describe this job (a separate process trains it: name
        its adapter file first, :meth:`with_run_folder`, so both sides know where it goes)."""
        argv: list[str] = []
        for job_field in job_fields():
            value = getattr(self, job_field.name)
            if value is None or value is False:
                continue
            if job_field.option.positional:
                argv.insert(0, str(value))
            elif value is True:
                argv.append(job_field.flag)
            else:
                argv += [job_field.flag, repr(value) if isinstance(value, float) else str(value)]  # exact
        return argv


#: the fields that say where a job trains (a Dask cluster, how to reach it), not what it trains
TARGET_FIELDS = ("cluster", "scheduler_file", "cluster_gpu", "tls_ca_file", "tls_cert", "tls_key")


def format_value(value: Any) -> str:
    """A field value as text: numbers as short as they parse back (``1e-5``, not ``1e-05``)."""
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
    return str(value)


def peft_spec(preset: str, depth: int, blocks: str | None = None, rank: int | None = None) -> PeftSpec:
    """The spec of ``preset`` with the job's overrides: ``blocks`` and ``rank`` (None: the preset's).

    Raises
    ------
    SamPeftError
        For an unknown preset, a bad block selection or rank.
    """
    overrides = {"rank": rank} if rank is not None else {}
    return spec_from_preset(preset, depth, blocks=blocks, **overrides)


@dataclass(frozen=True)
class JobField:
    """One field of :class:`TrainingJob`: its name, value type, default and :class:`Option`."""

    name: str
    type: type
    optional: bool  # None is allowed: the preset's (or the run's) choice
    default: Any  # dataclasses.MISSING when the field is required
    option: Option

    @property
    def flag(self) -> str:
        """The command-line flag: ``objects_per_image`` -> ``--objects-per-image``."""
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        """Whether the field has no default (a job must name it)."""
        return self.default is MISSING

    @property
    def default_text(self) -> str:
        """The default as the command line and the widget write it (``1e-5``); "" for none or a switch."""
        if self.required or self.default is None or self.type is bool:
            return ""
        return format_value(self.default)

    @property
    def help(self) -> str:
        """The help text, with the default where there is one."""
        return f"{self.option.help} (default {self.default_text})" if self.default_text else self.option.help

    @property
    def widget_default(self) -> Any:
        """The value the Finetune widget starts with (None: the widget's own first value)."""
        if self.option.widget_default is not None:
            return self.option.widget_default
        return None if self.required else self.default


@cache
def job_fields() -> tuple[JobField, ...]:
    """The fields of :class:`TrainingJob` in order, with their types resolved."""
    hints = typing.get_type_hints(TrainingJob)
    found = []
    for job_field in fields(TrainingJob):
        hint = hints[job_field.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        value_types = [t for t in members if t is not type(None)]
        found.append(
            JobField(
                name=job_field.name,
                type=value_types[0],
                optional=len(value_types) < len(members),
                default=job_field.default,
                option=job_field.metadata["option"],
            )
        )
    return tuple(found)


def job_field(name: str) -> JobField:
    """The :class:`JobField` called ``name``.

    Raises
    ------
    KeyError
        If :class:`TrainingJob` has no such field.
    """
    for candidate in job_fields():
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def options_table() -> str:
    """The markdown table of ``napari-sam-peft train`` options (docs/cluster.md holds a copy)."""
    lines = ["| option | default | what it sets |", "|---|---|---|"]
    for job_field in job_fields():
        name = job_field.option.metavar if job_field.option.positional else job_field.flag
        default = (
            "required" if job_field.required else f"`{job_field.default_text}`" if job_field.default_text else ""
        )
        lines.append(f"| `{name}` | {default} | {job_field.option.help} |")
    return "\n".join(lines)


def model_argument(model: LoadedModel) -> str:
    """How a separate process names the same base model: 'demo', a registry name or a file.

    Raises
    ------
    SamPeftError
        For a model built in memory, which no other process can load.
    """
    from ..sam.loading import DEMO_MODEL_NAME, known_model_names

    if model.identity.name == DEMO_MODEL_NAME:
        return DEMO_MODEL_NAME
    if model.source in known_model_names() or Path(model.source).is_file():
        return str(model.source)
    raise SamPeftError(
        "This model was built in memory, so a training process cannot load it: save it with "
        "napari_sam_peft.core.save_model and load that file."
    )
