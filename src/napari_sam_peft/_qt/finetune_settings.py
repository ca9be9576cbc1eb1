"""The Finetune widget's settings panel: what to train, with the fields of the training job's schema.

Every :class:`~napari_sam_peft.core.training.job.TrainingJob` field with a widget label gets a
field here, with the schema's label, tooltip, limits and default: a new hyperparameter in the
schema appears in this panel and in the run it starts without a change here.
"""

from __future__ import annotations

from typing import Any

import torch
from magicgui.widgets import CheckBox, Container, Label
from magicgui.widgets.bases import ValueWidget

from napari_sam_peft._qt.dock_layout import full_width, hold_heights, show_text, steady
from napari_sam_peft._qt.finetune_cluster import ClusterPanel
from napari_sam_peft._qt.finetune_continue import ContinueChoice
from napari_sam_peft._qt.job_field_widgets import field_value, field_widget, sentence
from napari_sam_peft.core.cluster.connect import ClusterInfo, WorkerInfo
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import PeftSpec
from napari_sam_peft.core.peft.recommend import recommend_preset
from napari_sam_peft.core.sam.architecture import VIT_B
from napari_sam_peft.core.sam.devices import select_device
from napari_sam_peft.core.sam.precision import resolve_precision, supported_precisions
from napari_sam_peft.core.sam.precision_probe import cached_probe, measured_decoder_pass
from napari_sam_peft.core.sam.registry import is_sam1
from napari_sam_peft.core.training.job import (
    TrainingJob,
    format_value,
    job_fields,
    model_argument,
    peft_spec,
)
from napari_sam_peft.core.training.plan import Schedule, continued_lr, schedule_for
from napari_sam_peft.core.training.recipe import RECIPES, Recipe, recipe_for
from napari_sam_peft.session import AnnotatorSession

#: settings whose change changes the estimate
ESTIMATED_FROM = (
    "preset",
    "blocks",
    "rank",
    "recipe",
    "objects_per_image",
    "sub_iterations",
    "steps",
    "precision",
)


class SettingsPanel(Container):
    """What the store holds, the recommended preset and why, the run's settings and the estimate."""

    def __init__(self, session: AnnotatorSession) -> None:
        super().__init__(labels=True)
        self.session = session
        # the texts above Start/Stop keep their height, so the buttons stay where the user aims
        self.data_status = steady(Label(value=""), 3)
        self.recommendation = steady(Label(value=""), 4)
        self.job_fields = [f for f in job_fields() if f.option.label]
        self.fields: dict[str, ValueWidget] = {f.name: field_widget(f) for f in self.job_fields}
        self.hot_reload = CheckBox(
            text="Live reload into Segment",
            value=True,
            tooltip="Attach each new best adapter to the Segment widget's model",
        )
        self.estimate = steady(Label(value=""), 5)
        self.remote: WorkerInfo | None = None  # the cluster worker a run would go to (see set_remote)
        self.cluster = ClusterPanel(on_connected=self.set_remote)
        self.recommended_lr: float | None = None  # for a run from the base model (see recommend)
        self.picked = ""  # the recommended preset and why (see recommend)
        self.continuation = ContinueChoice(session, self.spec)
        switches = [w for w in self.fields.values() if isinstance(w, CheckBox)]
        values = [w for w in self.fields.values() if not isinstance(w, CheckBox)]
        self.extend([self.data_status, self.cluster, self.recommendation, *values, self.hot_reload, *switches])
        self.extend([self.continuation.checkbox, self.continuation.note, self.estimate])
        for name in ESTIMATED_FROM:
            self.fields[name].changed.connect(self.update_estimate)
        for name in ("preset", "blocks", "rank"):  # whether the live adapter fits the run
            self.fields[name].changed.connect(self.continuation.update)
        self.continuation.changed.connect(self._follow_lr)
        self.fields["recipe"].changed.connect(self._recipe_changed)
        session.model.adapter_changed.connect(self.update_estimate)  # a continuation's steps
        self.fields["device"].changed.connect(self.recommend)
        session.model.base_changed.connect(self.recommend)
        for signal in (
            session.annotations.store_changed,
            session.annotations.store_updated,
        ):  # the data sets the recommended steps
            signal.connect(self.update_data_status)
            signal.connect(self.update_estimate)
        self.recommend()
        self.update_data_status()
        self.continuation.update()
        full_width(self.data_status, self.cluster, self.recommendation, self.continuation.note, self.estimate)

    def architecture(self):
        """The loaded model's architecture (SAM ViT-B before one is loaded)."""
        return self.session.model.loaded.architecture if self.session.model.loaded is not None else VIT_B

    def value(self, name: str) -> Any:
        """The job value of the field ``name`` (raises SamPeftError for a bad number)."""
        return field_value(next(f for f in self.job_fields if f.name == name), self.fields[name])

    def set_remote(self, info: ClusterInfo | None) -> None:
        """Recommend and estimate for the worker of ``info`` a run would go to (None: this machine)."""
        self.remote = None
        if info is not None and info.workers:
            try:
                self.remote = info.choose(gpu=bool(self.cluster.gpu.value))
            except SamPeftError as err:
                self.recommendation.value = str(err)
                return
        if hasattr(self, "cluster"):  # set_remote runs once while the cluster panel is made
            self.recommend()

    def device(self) -> torch.device:
        """The device the chosen setting trains on: here, or on the cluster's worker.

        Raises
        ------
        SamPeftError
            A device neither this machine nor the cluster's worker has.
        """
        value = self.fields["device"].value
        if self.remote is None:
            return select_device(value)
        if value == "auto":
            return torch.device(self.remote.device)
        if value == "mps" or value.startswith("cuda") and not self.remote.gpus:
            worker = self.remote.describe()
            raise SamPeftError(f"The cluster's worker ({worker}) has no {value}: choose auto or cpu.")
        return torch.device(value)

    def recommend(self, *_: Any) -> None:
        """Preselect the preset, blocks and learning rate the recommender picks for this device and model."""
        try:
            device = self.device()
        except SamPeftError as err:
            self.recommendation.value = str(err)
            return
        free = self.remote.free_gpu_memory if self.remote is not None and device.type == "cuda" else None
        pick = recommend_preset(device, self.architecture(), free_memory=free)
        self.fields["preset"].value = pick.preset
        self.fields["blocks"].value = pick.blocks or ""
        self.recommended_lr = pick.lr
        self.fields["lr"].value = format_value(self._schedule_lr(pick.lr, self.recipe(), self._continuing()))
        where = device.type if self.remote is None else f"the cluster's worker {self.remote.host} ({device.type})"
        self.picked = f"Recommended on {where}: {pick.preset}. {pick.reason}"
        self._decoder_follows_model()
        self._recipe_changed()

    def _decoder_follows_model(self) -> None:
        """The instance decoder (micro_sam's UNETR) reads SAM 1 embeddings only: off and greyed out for a
        SAM 2.1 model, back on when a SAM 1 model replaces one."""
        box = self.fields["with_decoder"]
        sam1 = is_sam1(self.architecture())
        if sam1 and not box.enabled:
            box.value = True
        elif not sam1:
            box.value = False
        box.enabled = sam1
        box.tooltip = (
            next(f for f in self.job_fields if f.name == "with_decoder").option.tooltip
            if sam1
            else "The instance decoder does not read SAM 2.1 embeddings yet: automatic segmentation uses the mask "
            "generator with a SAM 2.1 model"
        )

    def recipe(self) -> Recipe:
        """The recipe the run takes: the one chosen, or ``auto``'s for the device (the paper's where the
        device cannot be known)."""
        try:
            device_type = self.device().type
        except SamPeftError:
            device_type = "cuda"
        return recipe_for(self.value("recipe"), device_type)

    def _recipe_changed(self, *_: Any) -> None:
        """Say what the recipe does beside the recommended preset, and let the rate follow it."""
        try:
            precision = self.auto_precision(self.device())
        except SamPeftError as err:
            self.recommendation.value = str(err)
            return
        recipe = self.recipe()
        other = next(name for name in RECIPES if name != recipe.name)
        self.recommendation.value = (
            f"{self.picked} {sentence(recipe.summary)} (recipe '{other}' for the other). Precision: {precision}."
        )
        self._follow_lr()

    def _continuing(self) -> bool:
        return hasattr(self, "continuation") and self.continuation.parent() is not None

    def _follow_lr(self, *_: Any) -> None:
        """A continuation is recommended a smaller rate, and each recipe its own: the rate field follows
        unless the user typed one."""
        if self.recommended_lr is not None:
            base = self.recommended_lr
            shown = {format_value(self._schedule_lr(base, r, c)) for r in RECIPES.values() for c in (False, True)}
            if self.fields["lr"].value.strip() in shown:
                lr = self._schedule_lr(base, self.recipe(), self._continuing())
                self.fields["lr"].value = format_value(lr)
        self.update_estimate()

    @staticmethod
    def _schedule_lr(recommended: float, recipe: Recipe, continuing: bool) -> float:
        """The rate a run takes from the base model's recommended one: the recipe's multiple, smaller for a
        continuation."""
        lr = recipe.rate(recommended)
        return continued_lr(lr) if continuing else lr

    def auto_precision(self, device: Any) -> str:
        """What ``auto`` trains in on ``device``, with the probe's figures (never runs a probe itself:
        the Segment widget's model load did, on a worker thread)."""
        from napari_sam_peft.core.training.loop import step_use

        if self.remote is not None:
            return "auto, chosen on the worker when the run starts"
        model = self.session.model.loaded
        result = cached_probe(model.sam) if model is not None and model.device.type == device.type else None
        try:
            use = step_use(self.spec())  # a frozen encoder's steps are decoder passes alone
        except SamPeftError:
            use = "train"
        auto = resolve_precision("auto", device, (lambda: result) if result is not None else None, use=use)
        if result is None and supported_precisions(device) != ["fp32"]:
            return "auto, chosen by a short probe of the model when the run starts"
        return f"{auto.name} ({auto.reason})"

    def spec(self) -> PeftSpec:
        """The PEFT spec the settings describe (raises SamPeftError for a bad preset, block selection or rank)."""
        depth = self.architecture().depth
        return peft_spec(self.value("preset"), depth, self.value("blocks"), self.value("rank"))

    def update_estimate(self, *_: Any) -> None:
        """Say how many parameters train and how much memory and time the run takes (the decoder's time from
        the precision probe's measured pass on this machine, where it ran)."""
        from napari_sam_peft.core.training.estimate import CPU_FLOPS_PER_THREAD, estimate_training

        if self.session.model.loaded is None:  # the estimate depends on the model: none until one is loaded
            self.estimate.value = "Estimate: load a model in the Segment widget first."
            return
        try:
            device = self.device()
            spec = self.spec()
            schedule, why = self.schedule(spec.method)
            flops = None
            if self.remote is not None and device.type == "cpu":  # the worker's threads, not this machine's
                flops = CPU_FLOPS_PER_THREAD * max(self.remote.threads, 1)
            estimate = estimate_training(
                spec,
                self.architecture(),
                str(device),
                schedule.objects_per_image,
                schedule.sub_iterations,
                flops_per_second=flops,
                decoder_pass_seconds=self._measured_decoder_pass(device, spec),
            )
        except (SamPeftError, ValueError, TypeError) as err:
            self.estimate.value = f"Cannot train this: {err}"
            return
        self.estimate.value = f"Estimate: {estimate.describe(schedule.steps)}{why}"

    def _measured_decoder_pass(self, device: torch.device, spec: PeftSpec) -> float | None:
        """The seconds of one decoder pass, forward and backward, as the model's precision probe measured it
        here in the precision the run takes; None for a cluster's worker or before the probe ran.

        Raises
        ------
        SamPeftError
            For a precision this machine cannot train in.
        """
        from napari_sam_peft.core.training.loop import step_use

        if self.remote is not None:  # the worker checks the precision against its own hardware
            return None
        model = self.session.model.loaded
        result = cached_probe(model.sam) if model is not None and model.device.type == device.type else None
        use = step_use(spec)
        precision = resolve_precision(
            self.value("precision"), device, (lambda: result) if result is not None else None, use=use
        )
        return measured_decoder_pass(model.sam, precision.name) if result is not None and model else None

    def schedule(self, method: str) -> tuple[Schedule, str]:
        """The schedule a run of these settings takes on the store's training data (as ``train`` resolves it:
        ``core.training.plan.schedule_for``), and why its steps where they are recommended; a volume's
        objects count once on each slice, as the run's samples do.

        Raises
        ------
        SamPeftError
            For a setting that is not a number.
        """
        store = self.session.annotations.store
        info = store.info() if store is not None else {"train_objects": 0, "volumes": 0}
        new_objects = self.continuation.new_objects() if hasattr(self, "continuation") else None
        count = info["train_sample_objects"] if info["volumes"] else info["train_objects"]
        schedule = schedule_for(
            method,
            self.architecture(),
            count,
            self.recipe(),
            new_objects,
            steps=self.value("steps"),
            objects_per_image=self.value("objects_per_image"),
            sub_iterations=self.value("sub_iterations"),
            validate_every=self.value("validate_every"),
        )
        if schedule.steps_chosen == "given":
            return schedule, ""
        if new_objects is not None:
            return schedule, f" (recommended for a continuation with {new_objects} new objects)"
        if not info["volumes"]:
            return schedule, f" (recommended for {count} training objects)"
        # the same object count as the Dataset dock's; a volume's objects are trained on once per slice
        why = (
            f" (recommended for {info['train_objects']} training objects, seen on {info['train_samples']} "
            f"training slices and images as {count} outlines)"
        )
        return schedule, why

    def hold_layout(self, hold: bool) -> None:
        """While a run goes on, the texts above Start/Stop keep their height (see :func:`.steady`)."""
        hold_heights([self.data_status, self.recommendation, self.continuation.note, self.estimate], hold)

    def update_data_status(self, *_: Any) -> None:
        """Say how many training and validation objects the store holds, and where it is."""
        store = self.session.annotations.store
        if store is None:
            where = self.session.annotations.default_store_path
            show_text(
                self.data_status,
                "No training data yet: commit objects in the Segment widget"
                + (f" (they are recorded in {where})." if where else "."),
                str(where or ""),
            )
            return
        info = store.info()
        slices = f" ({info['train_samples']} slices to train on)" if info["volumes"] else ""
        show_text(
            self.data_status,
            f"{info['train_objects']} training objects on {info['train_images']} images{slices}, "
            f"{info['val_objects']} validation objects, in {store.path}",
            str(store.path),
        )

    def job(self) -> TrainingJob:
        """The run the settings describe, on the session's store and model.

        Raises
        ------
        SamPeftError
            Without a store or a model, or for a bad setting (checked here, not in the worker).
        """
        if self.session.annotations.store is None:
            raise SamPeftError(
                "There is no training data yet: commit objects in the Segment widget (S to segment, C to commit)."
            )
        model = self.session.model.require()
        values = {f.name: self.value(f.name) for f in self.job_fields}
        self.spec()  # validates preset, blocks and rank now, not in the worker
        cluster = self.cluster.job_values()
        device = self.device()
        if not cluster:
            resolve_precision(values["precision"], device)
        return TrainingJob(
            store=self.session.annotations.store.path,
            model=model_argument(model),
            cache_dir=None if cluster else self.session.embeddings.cache.root,
            from_adapter=self.continuation.parent(),
            **values,
            **cluster,
        )
