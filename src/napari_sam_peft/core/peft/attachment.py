"""Attaching a PEFT method to a live SAM model in place, and detaching it exactly.

``attach`` wraps modules, sets which parameters train and (optionally) loads trained
tensors. It validates everything it can before it changes the model, and rolls back if
loading fails half-way, so an error leaves the model as it was. ``detach`` restores the
original modules and the original values of every base parameter that trained, so the
model afterwards has exactly its base weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import SamPeftError
from ..sam.registry import image_encoder_of
from ..sam.stages import first_stage_touched
from .counting import parameter_count
from .layers import plain_linear
from .methods import Replacement, get_method
from .presets import PeftSpec
from .quantize import QuantizationUnavailableError, Quantized, quantization_backend, quantize_frozen_linears
from .target import EncoderTarget

__all__ = [
    "AdapterAttachError",
    "AttachedPeft",
    "QuantizationUnavailableError",
    "attach",
    "attached_to",
    "base_name",
    "frozen_prefix_stages",
]

_ATTACHED = "_napari_sam_peft_attached"


class AdapterAttachError(SamPeftError):
    """The adapter's tensors do not fit the model, or the model already carries an adapter."""


def base_name(name: str) -> str:
    """The name a parameter has in plain SAM (wrappers keep the original module as ``.base``)."""
    return name.replace(".base.", ".")


def attached_to(sam: nn.Module) -> AttachedPeft | None:
    """The adapter currently attached to ``sam``, if any."""
    return getattr(sam, _ATTACHED, None)


def frozen_prefix_stages(sam: nn.Module) -> int:
    """How many leading encoder stages neither train nor were changed by the attached adapter.

    0 means nothing can be cached; ``sam.stages.stage_count(sam)`` (``depth + 2`` for SAM's ViT)
    means the whole encoder is frozen. A wrapped or quantised module changes its stage's output
    even where nothing in it trains.
    """
    names = [name for name, param in sam.named_parameters() if param.requires_grad]
    handle = attached_to(sam)
    if handle is not None:
        names += handle.changed_module_names()
    return first_stage_touched(sam, names)


class AttachedPeft:
    """A PEFT method attached to a live model. Use :func:`attach` to make one."""

    def __init__(self, sam: nn.Module, spec: PeftSpec) -> None:
        self.sam = sam
        self.spec = spec
        self.replacements: list[Replacement] = []
        self.base_backup: dict[str, torch.Tensor] = {}
        self.requires_grad_before: dict[str, bool] = {}
        self.quantized: list[Quantized] = []
        self.trainable_names: list[str] = []
        self._attached = False

    def _apply(self) -> None:
        sam, spec = self.sam, self.spec
        method = get_method(spec.method)
        target = EncoderTarget(sam, spec.blocks)
        self.requires_grad_before = {n: p.requires_grad for n, p in sam.named_parameters()}
        setattr(sam, _ATTACHED, self)
        self._attached = True  # from here on, detach() undoes whatever was done
        self.replacements = method.inject(target, spec.options)
        for *_, wrapper in self.replacements:
            wrapper.train(sam.training)  # new modules start in training mode (dropout on)
        wrappers = {id(w) for *_, w in self.replacements}
        added = {
            f"{module_name}.{pname}"
            for module_name, module in sam.named_modules()
            if id(module) in wrappers
            for pname, _ in module.named_parameters()
            if not pname.startswith("base.")
        }
        for name, param in sam.named_parameters():
            selected = name in added or method.selects_base(base_name(name), target)
            param.requires_grad_(selected)
            if selected:
                self.trainable_names.append(name)
                if name not in added and param.device.type != "meta":
                    self.base_backup[name] = param.detach().to("cpu", copy=True)

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy trained tensors into the attached model (names as in :meth:`trained_tensors`).

        Raises
        ------
        AdapterAttachError
            If the names or shapes do not fit this model and method.
        """
        params = dict(self.sam.named_parameters())
        expected, given = set(self.trainable_names), set(tensors)
        if expected != given:
            missing, extra = sorted(expected - given), sorted(given - expected)
            detail = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
            raise AdapterAttachError(
                f"The adapter's tensors do not fit this model and method ({detail}, "
                f"{len(missing)} missing, {len(extra)} unexpected). It was made for another model size "
                "or by an incompatible version."
            )
        for name, value in tensors.items():
            if tuple(value.shape) != tuple(params[name].shape):
                raise AdapterAttachError(
                    f"The adapter's tensor {name!r} has shape {tuple(value.shape)}, but this model needs "
                    f"{tuple(params[name].shape)}. It was made for another model size."
                )
        with torch.no_grad():
            for name, value in tensors.items():
                params[name].copy_(value.to(device=params[name].device, dtype=params[name].dtype))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters this method trains, in the model's order."""
        params = dict(self.sam.named_parameters())
        return [params[n] for n in self.trainable_names]

    def num_trainable(self) -> int:
        """How many parameters this method trains."""
        return parameter_count(self.trainable_parameters())

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """Copies of the tensors this method trains, on the CPU: what an adapter file holds."""
        params = dict(self.sam.named_parameters())
        return {n: params[n].detach().to("cpu", copy=True).contiguous() for n in self.trainable_names}

    def changed_module_names(self) -> list[str]:
        """Paths (relative to the model) of the modules this adapter wrapped or quantised."""
        paths = {id(module): name for name, module in self.sam.named_modules()}
        changed = [paths.get(id(wrapper)) for *_, wrapper in self.replacements]
        changed += [f"{paths.get(id(parent))}.{attr}" for parent, attr, _ in self.quantized]
        return [name for name in changed if name is not None]

    def merged_state_dict(self) -> dict[str, torch.Tensor]:
        """A plain SAM state dict with the adapter folded in (loads into ``segment_anything``).

        Raises
        ------
        MergeNotSupportedError
            For methods with a non-linear branch (AdaptFormer).
        """
        if not get_method(self.spec.method).mergeable:
            self.replacements[0][3].merged()  # raises with the method's explanation
        clone = copy.deepcopy(self.sam)
        if hasattr(clone, _ATTACHED):
            delattr(clone, _ATTACHED)
        wrappers = [(name, m) for name, m in clone.named_modules() if hasattr(m, "merged") and hasattr(m, "base")]
        for name, wrapper in sorted(wrappers, key=lambda item: -item[0].count(".")):
            _replace_module(clone, name, wrapper.merged())
        # QLoRA: the encoder's remaining 4-bit layers become full-precision Linears again.
        for name, module in list(clone.named_modules()):
            if getattr(getattr(module, "weight", None), "quant_state", None) is not None:
                _replace_module(clone, name, plain_linear(module))
        return {k: v.detach().to("cpu").float().contiguous() for k, v in clone.state_dict().items()}

    def detach(self) -> None:
        """Remove the adapter: original modules, original base values, original grad flags."""
        if not self._attached:
            return
        for parent, attr, original in reversed(self.quantized):
            setattr(parent, attr, original.to(_device_of(parent)))
        self.quantized = []
        for parent, attr, original, _ in reversed(self.replacements):
            setattr(parent, attr, original)
        self.replacements = []
        params = dict(self.sam.named_parameters())
        with torch.no_grad():
            for name, value in self.base_backup.items():
                target = params[base_name(name)]
                target.copy_(value.to(target.device))
        for name, flag in self.requires_grad_before.items():
            if name in params:
                params[name].requires_grad_(flag)
        self.base_backup = {}
        if getattr(self.sam, _ATTACHED, None) is self:
            delattr(self.sam, _ATTACHED)
        self._attached = False


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def _replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, module)


def attach(
    sam: nn.Module,
    spec: PeftSpec,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> AttachedPeft:
    """Attach ``spec`` to ``sam`` in place and return the handle.

    With ``tensors`` (from an adapter file) the trained values are loaded; without, the
    method starts from its initialisation, which leaves the model's output unchanged.

    Raises
    ------
    AdapterAttachError
        If ``sam`` already carries an adapter, or the tensors do not fit. The model is left
        unchanged.
    QuantizationUnavailableError
        For QLoRA anywhere but on CUDA with bitsandbytes installed.
    """
    current = attached_to(sam)
    if current is not None:
        raise AdapterAttachError(
            f"This model already carries an adapter ({current.spec.describe()}). Detach it first."
        )
    quantize = spec.options.quantizes_encoder
    # Fail before touching the model when QLoRA cannot run here.
    bnb = quantization_backend(next(sam.parameters()).device) if quantize else None
    handle = AttachedPeft(sam, spec)
    try:
        handle._apply()
        if bnb is not None:
            quantize_frozen_linears(image_encoder_of(sam), bnb, handle.quantized)
        if tensors is not None:
            handle.load_tensors(tensors)
    except BaseException:
        handle.detach()
        raise
    return handle
