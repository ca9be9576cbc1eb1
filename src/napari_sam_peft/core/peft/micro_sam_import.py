"""Import a micro_sam PEFT checkpoint (``PEFT_Sam``) as an adapter, where the method matches.

micro_sam saves the whole wrapped model. Its LoRA (q/k/v and MLP), FacT and SSF hold the
same tensors as ours under other names, so they convert exactly; the frozen base weights
in the checkpoint must equal the base model's, else it was trained on another base.
AdaptFormer is refused: micro_sam's adds an extra residual, so the same tensors would
compute a different model here. Selective methods (LN/bias/attention tune, late FT)
save plain SAM weights: load those as a model, not as an adapter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..errors import InvalidCheckpointError
from ..sam.loading import LoadedModel, sam_state_from
from .adapter_file import Adapter
from .attachment import attach, base_name
from .presets import make_spec

_BLOCK = re.compile(r"image_encoder\.blocks\.(\d+)\.")

# micro_sam name fragment -> ours, per method.
_LORA_RENAMES = [
    (".attn.qkv.qkv_proj.", ".attn.qkv.base."),
    (".attn.qkv.w_a_linear_q.weight", ".attn.qkv.lora_a_q"),
    (".attn.qkv.w_b_linear_q.weight", ".attn.qkv.lora_b_q"),
    (".attn.qkv.w_a_linear_k.weight", ".attn.qkv.lora_a_k"),
    (".attn.qkv.w_b_linear_k.weight", ".attn.qkv.lora_b_k"),
    (".attn.qkv.w_a_linear_v.weight", ".attn.qkv.lora_a_v"),
    (".attn.qkv.w_b_linear_v.weight", ".attn.qkv.lora_b_v"),
    (".mlp.mlp_layer.lin1.", ".mlp.lin1.base."),
    (".mlp.mlp_layer.lin2.", ".mlp.lin2.base."),
    (".mlp.w_a_linear_1.weight", ".mlp.lin1.lora_a"),
    (".mlp.w_b_linear_1.weight", ".mlp.lin1.lora_b"),
    (".mlp.w_a_linear_2.weight", ".mlp.lin2.lora_a"),
    (".mlp.w_b_linear_2.weight", ".mlp.lin2.lora_b"),
]
_FACT_RENAMES = [
    (".attn.qkv.qkv_proj.", ".attn.qkv.base."),
    (".attn.qkv.FacTu.weight", ".attn.qkv.fact_u"),
    (".attn.qkv.FacTv.weight", ".attn.qkv.fact_v"),
    (".attn.qkv.q_FacTs.weight", ".attn.qkv.fact_s_q"),
    (".attn.qkv.v_FacTs.weight", ".attn.qkv.fact_s_v"),
]
_SSF_RENAMES = [
    (f".{m}.layer.", f".{m}.base.") for m in ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2", "norm1", "norm2")
] + [
    (f".{m}.{p}", f".{m}.ssf_{p}")
    for m in ("attn.qkv", "attn.proj", "mlp.lin1", "mlp.lin2", "norm1", "norm2")
    for p in ("scale", "shift")
]


def _detect(state: dict[str, torch.Tensor]) -> tuple[str, dict, list[tuple[str, str]]]:
    keys = list(state)
    if any(".w_a_linear_" in k for k in keys):
        targets = [p for p in ("q", "k", "v") if any(f"w_a_linear_{p}." in k for k in keys)]
        if any(".mlp.w_a_linear_1." in k for k in keys):
            targets.append("mlp")
        rank = next(v.shape[0] for k, v in state.items() if ".w_a_linear_" in k)
        return "lora", {"rank": rank, "alpha": rank, "targets": tuple(targets)}, _LORA_RENAMES
    if any(".FacTu." in k for k in keys):
        rank = next(v.shape[0] for k, v in state.items() if ".FacTu." in k)
        return "fact", {"rank": rank}, _FACT_RENAMES
    if any(k.endswith(".attn.qkv.scale") for k in keys):
        return "ssf", {}, _SSF_RENAMES
    if any(".mlp.down_proj." in k for k in keys):
        raise InvalidCheckpointError(
            "This micro_sam checkpoint uses AdaptFormer, whose micro_sam version adds an extra residual; "
            "napari-sam-peft's AdaptFormer does not, so the tensors cannot be imported as the same model."
        )
    raise InvalidCheckpointError(
        "No micro_sam PEFT adapter found in this checkpoint (LoRA, FacT or SSF). If it was trained with "
        "LN, bias or attention tuning or late finetuning, it holds plain SAM weights: load it as the model."
    )


def import_micro_sam_checkpoint(source: str | os.PathLike[str] | dict, base: LoadedModel) -> Adapter:
    """Convert a micro_sam PEFT checkpoint (file or state dict) into an :class:`Adapter` for ``base``.

    Raises
    ------
    InvalidCheckpointError
        Not a micro_sam PEFT checkpoint of a supported method, or trained on a different base model.
    """
    if isinstance(source, dict):
        state = sam_state_from(source, Path("checkpoint"))
    else:
        path = Path(source)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001
            raise InvalidCheckpointError(
                f"{path.name} is not a readable weights-only checkpoint ({err})."
            ) from None
        state = sam_state_from(raw, path)
    method, options, renames = _detect(state)
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK.match(k)) and _is_adapter_key(k, method)})
    renamed = {}
    for key, value in state.items():
        for old, new in renames:
            if old in key:
                key = key.replace(old, new)
                break
        renamed[key] = value

    spec = make_spec(method, base.architecture.depth, blocks=tuple(blocks), options=options)
    if method == "ssf" and len(blocks) == base.architecture.depth:
        # micro_sam never applies its patch-embedding scale/shift: import it as the identity.
        weight = renamed.pop("image_encoder.patch_embed.proj.weight")
        bias = renamed.pop("image_encoder.patch_embed.proj.bias")
        renamed["image_encoder.patch_embed.proj.base.weight"] = weight
        renamed["image_encoder.patch_embed.proj.base.bias"] = bias
        renamed["image_encoder.patch_embed.proj.ssf_scale"] = torch.ones(weight.shape[0])
        renamed["image_encoder.patch_embed.proj.ssf_shift"] = torch.zeros(weight.shape[0])
    handle = attach(base.sam, spec)
    try:
        base_state = base.sam.state_dict()
        if set(renamed) != set(base_state):
            missing = sorted(set(base_state) - set(renamed))[:1] or sorted(set(renamed) - set(base_state))[:1]
            raise InvalidCheckpointError(
                f"The micro_sam checkpoint does not match this base model's architecture ({missing[0]!r})."
            )
        trainable = set(handle.trainable_names)
        for key, value in renamed.items():
            if key in trainable:
                continue
            if not torch.equal(value.to(base_state[key].dtype), base_state[key].cpu()):
                raise InvalidCheckpointError(
                    f"The checkpoint's frozen weight {base_name(key)!r} differs from the base model "
                    f"{base.identity.name!r}: it was trained from another base model. Load that model first."
                )
        handle.load_tensors({k: renamed[k] for k in trainable})
        return Adapter.from_attached(handle, base, metrics={"imported_from": "micro_sam PEFT_Sam"})
    finally:
        handle.detach()


def _is_adapter_key(key: str, method: str) -> bool:
    markers = {"lora": ".w_a_linear_", "fact": ".FacTu.", "ssf": ".attn.qkv.scale"}
    return markers[method] in key
