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
from .layers import plain_linear
from .methods import Replacement, get_method
from .presets import PeftSpec

_ATTACHED = "_napari_sam_peft_attached"


class AdapterAttachError(SamPeftError):
    """The adapter's tensors do not fit the model, or the model already carries an adapter."""


class QuantizationUnavailableError(SamPeftError):
    """QLoRA needs CUDA and bitsandbytes."""


def base_name(name: str) -> str:
    """The name a parameter has in plain SAM (wrappers keep the original module as ``.base``)."""
    return name.replace(".base.", ".")


def attached_to(sam: nn.Module) -> AttachedPeft | None:
    """The adapter currently attached to ``sam``, if any."""
    return getattr(sam, _ATTACHED, None)


class AttachedPeft:
    """A PEFT method attached to a live model. Use :func:`attach` to make one."""

    def __init__(self, sam: nn.Module, spec: PeftSpec) -> None:
        self.sam = sam
        self.spec = spec
        self.replacements: list[Replacement] = []
        self.base_backup: dict[str, torch.Tensor] = {}
        self.requires_grad_before: dict[str, bool] = {}
        self.quantized: list[tuple[nn.Module, str, nn.Module]] = []
        self.trainable_names: list[str] = []
        self._attached = False

    # ----------------------------------------------------------------- building
    def _apply(self) -> None:
        sam, spec = self.sam, self.spec
        method = get_method(spec.method)
        self.requires_grad_before = {n: p.requires_grad for n, p in sam.named_parameters()}
        setattr(sam, _ATTACHED, self)
        self._attached = True  # from here on, detach() undoes whatever was done
        self.replacements = method.inject(sam, spec.blocks, spec.options)
        for *_, wrapper in self.replacements:
            wrapper.train(sam.training)  # new modules start in training mode (dropout on)
        added: set[str] = set()
        wrapper_paths = {id(w): None for *_, w in self.replacements}
        for module_name, module in sam.named_modules():
            if id(module) in wrapper_paths:
                for pname, _ in module.named_parameters():
                    if not pname.startswith("base."):
                        added.add(f"{module_name}.{pname}")
        trainable: list[str] = []
        for name, param in sam.named_parameters():
            selected = name in added or (
                name not in added and method.selects_base(base_name(name), sam, spec.blocks)
            )
            param.requires_grad_(selected)
            if selected:
                trainable.append(name)
                if name not in added and param.device.type != "meta":
                    self.base_backup[name] = param.detach().to("cpu", copy=True)
        self.trainable_names = trainable

    def _quantize(self) -> None:
        """Replace the encoder's Linear layers by 4-bit ones (bitsandbytes, CUDA only)."""
        device = next(self.sam.parameters()).device
        if device.type != "cuda":
            raise QuantizationUnavailableError(
                "QLoRA quantises the image encoder to 4 bit with bitsandbytes, which needs an NVIDIA GPU "
                f"(this model is on {device.type}). Use the 'lora' preset: the same adapters on a "
                "full-precision encoder."
            )
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise QuantizationUnavailableError(
                "QLoRA needs the bitsandbytes package: pip install 'napari-sam-peft[qlora]'."
            ) from None
        for parent in list(self.sam.image_encoder.modules()):
            for attr, child in list(parent.named_children()):
                if type(child) is not nn.Linear or child.weight.requires_grad:
                    continue
                quantized = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.float32,
                    quant_type="nf4",
                )
                quantized.weight = bnb.nn.Params4bit(
                    child.weight.data.to("cpu"), requires_grad=False, quant_type="nf4"
                )
                if child.bias is not None:
                    quantized.bias = nn.Parameter(child.bias.data.clone(), requires_grad=False)
                quantized = quantized.to(device)  # quantises on the move to CUDA
                setattr(parent, attr, quantized)
                self.quantized.append((parent, attr, child.to("cpu")))

    def load_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy trained tensors into the attached model (names as in :meth:`trained_tensors`)."""
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

    # ------------------------------------------------------------------- using
    def trainable_parameters(self) -> list[nn.Parameter]:
        params = dict(self.sam.named_parameters())
        return [params[n] for n in self.trainable_names]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def trained_tensors(self) -> dict[str, torch.Tensor]:
        """Copies of the tensors this method trains, on the CPU: what an adapter file holds."""
        params = dict(self.sam.named_parameters())
        return {n: params[n].detach().to("cpu", copy=True).contiguous() for n in self.trainable_names}

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

    @property
    def is_attached(self) -> bool:
        return self._attached

    def detach(self) -> None:
        """Remove the adapter: original modules, original base values, original grad flags."""
        if not self._attached:
            return
        for parent, attr, original in reversed(self.quantized):
            device = self._device_of(parent)
            setattr(parent, attr, original.to(device))
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

    @staticmethod
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
    handle = AttachedPeft(sam, spec)
    try:
        if spec.options.get("quantize"):
            # Fail before touching the model when QLoRA cannot run here.
            if next(sam.parameters()).device.type != "cuda":
                handle._quantize()
        handle._apply()
        if spec.options.get("quantize"):
            handle._quantize()
        if tensors is not None:
            handle.load_tensors(tensors)
    except BaseException:
        handle.detach()
        raise
    return handle
