"""The Segment widget's model panel: choose, load, attach, detach, and say which model is live."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import on_click, show_text, wrapping
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.sam.devices import DEVICE_CHOICES
from napari_sam_peft.core.sam.loading import (
    DEMO_MODEL_NAME,
    load_model,
    offline_model_names,
    registry_model_names,
)
from napari_sam_peft.core.sam.model_needs import model_needs_line
from napari_sam_peft.core.sam.sam2_registry import sam2_model_names
from napari_sam_peft.session import AnnotatorSession

if TYPE_CHECKING:
    from napari_sam_peft.core.sam.loading import LoadedModel
    from napari_sam_peft.core.sam.precision import Precision


class ModelPanel:
    """Widgets to load a base model (on a worker thread) and attach or detach an adapter."""

    def __init__(self, session: AnnotatorSession, jobs: BackgroundJobs) -> None:
        self.session = session
        self.jobs = jobs
        offline = offline_model_names()  # real weights (LiteMedSAM) first: the default
        self.model_choice = ComboBox(
            label="model",
            choices=[*offline, *registry_model_names(), *sam2_model_names()],
            value=offline[0] if offline else DEMO_MODEL_NAME,
            tooltip="lite_medsam and demo load offline; micro_sam's models (SAM 1: vit_*, SAM 2.1: hvit_*) "
            "download once",
        )
        self.needs = wrapping(Label(value=""))
        self.model_choice.changed.connect(self.show_needs)
        self.show_needs()
        self.model_file = FileEdit(label="or file", mode="r", filter="*.pth *.pt *.safetensors")
        self.device_choice = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.load_button = PushButton(text="Load model")
        self.adapter_file = FileEdit(label="adapter", mode="r", filter="*.safetensors")
        self.attach_button = PushButton(text="Attach adapter", tooltip="Attach the chosen .safetensors adapter")
        self.detach_button = PushButton(
            text="Base model",
            tooltip="Segment with the base model alone, to compare (hot reloads wait; the Finetune dock's "
            "'segment with' switch shows the same)",
        )
        self.status = wrapping(Label(value="No model loaded."))
        self.adapter_row = Container(
            widgets=[self.attach_button, self.detach_button], layout="horizontal", labels=False
        )
        on_click(self.load_button, self.load_model)
        on_click(self.attach_button, lambda: self.attach_adapter(self.adapter_file.value))
        on_click(self.detach_button, self.use_base_model)
        session.model.base_changed.connect(self.update_status)
        session.model.adapter_changed.connect(self.update_status)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [
            self.model_choice,
            self.needs,
            self.model_file,
            self.device_choice,
            self.load_button,
            self.adapter_file,
            self.adapter_row,
            self.status,
        ]

    def show_needs(self, *_: object) -> None:
        """Say under the list what the chosen model needs (measured input size, seconds, memory)."""
        line = model_needs_line(str(self.model_choice.value))
        show_text(self.needs, f"needs: {line}" if line else "", tooltip=line)

    def load_model(self) -> None:
        """Load the chosen model on a worker thread (downloads can take minutes)."""
        file = self.model_file.value
        name = str(file) if file and Path(file).is_file() else self.model_choice.value
        device = self.device_choice.value
        self.status.value = f"Loading {name}..."

        # The session (and its signals) change on the main thread only: set_model runs on return; the
        # precision probe (a second, once per machine and model) runs here on the worker thread.
        def load(_report: object) -> tuple[LoadedModel, Precision]:
            loaded = load_model(name, device=device)
            return loaded, self.session.model.embedding_precision(loaded)

        self.jobs.run(f"Loading model {name}", load, lambda result: self.session.model.set_base(*result))

    def attach_adapter(self, path: Path | str | None) -> None:
        """Attach the adapter file at ``path`` (None: back to the base model); errors are notifications."""
        with user_errors():
            if path is not None:
                if not path or str(path) in ("", ".") or Path(path).is_dir():
                    raise SamPeftError("Choose an adapter file (.safetensors) first.")
                if not Path(path).exists():
                    raise SamPeftError(
                        f"The adapter file {path} does not exist: choose an existing .safetensors file."
                    )
            self.session.model.set_adapter(path)

    def use_base_model(self) -> None:
        """Segment with the base model alone: the one base-only switch both docks show (hot reloads wait)."""
        with user_errors():
            self.session.model.use_base(True)

    def update_status(self, *_: object) -> None:
        """Say which model and adapter segment now."""
        model = self.session.model.loaded
        if model is None:
            self.status.value = "No model loaded."
            return
        adapter = self.session.model.adapter
        active = "base model" if adapter is None else f"adapter {adapter.spec.describe()} [{adapter.identity[:8]}]"
        if adapter is not None and adapter.has_decoder:
            active += " + instance decoder"
        precision = self.session.model.precision
        embeds = f"embeds in {precision.name}" + (f" ({precision.probe})" if precision.probe else "")
        text = f"{model.identity.name} on {model.device.type}, {active}, {embeds}"
        tooltip = f"{text} ({precision.reason}). Automatic: {self.session.model.decoder.description}."
        if adapter is not None:
            text = f"{live_adapter_line(adapter.metrics, bool(adapter.parent_adapter))}\n{text}"
        show_text(self.status, text, tooltip=tooltip)

    def disconnect(self) -> None:
        """Stop observing the session (the widget is closing)."""
        self.session.model.base_changed.disconnect(self.update_status)
        self.session.model.adapter_changed.disconnect(self.update_status)


def live_adapter_line(metrics: dict, continued: bool) -> str:
    """What the live adapter is worth, from the metrics its run recorded: "Adapter from step 8 is live
    (Box +0.051 on validation: 0.412, base model 0.361)"; an adapter without them is just "Adapter is live"."""
    score, step = metrics.get("val_box_iou"), metrics.get("step")
    if score is None:
        return "Adapter is live."
    start = metrics.get("start_box_iou")
    before = "the adapter it continued" if continued else "base model"
    change = (
        f"Box {score - start:+.3f} on validation: {score:.3f}, {before} {start:.3f}"
        if start is not None
        else (f"Box {score:.3f} on validation")
    )
    return f"Adapter from step {step} is live ({change})."
