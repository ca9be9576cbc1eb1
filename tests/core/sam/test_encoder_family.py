"""A second encoder family, defined in this test module alone, works everywhere the ViT does.

The toy family differs from SAM's ViT in every way the protocol covers: its blocks sit in two
stages with a patch-merging convolution between them (that convolution shares a stage with the
next block, as TinyViT's do), its layers have other names (``mixer.to_qkv``, ``ffn.fc1``,
``ln_a``), and its fused qkv output holds q, k and v per head (as TinyViT's does). Registering
it takes one row in ``registry.FAMILIES``; nothing in the package changes. That is what the
TinyViT issue relies on: a family is one module plus registry rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_sam_peft.core.annotation.stage_inputs import StageInputs
from napari_sam_peft.core.data.sample_data import make_series
from napari_sam_peft.core.peft import (
    PRESETS,
    Adapter,
    attach,
    count_trainable_parameters,
    frozen_prefix_stages,
    spec_from_preset,
)
from napari_sam_peft.core.peft.attachment import base_name
from napari_sam_peft.core.sam import registry
from napari_sam_peft.core.sam.architecture import (
    build_sam,
    infer_architecture,
    same_weight_shapes,
)
from napari_sam_peft.core.sam.encoder_family import (
    Architecture,
    BlockLayout,
    EncoderCost,
    StageCost,
    decoder_fields,
)
from napari_sam_peft.core.sam.loading import LoadedModel, load_model, model_identity, save_model
from napari_sam_peft.core.sam.preprocessing import model_input
from napari_sam_peft.core.sam.sam1_model import SamOneModel
from napari_sam_peft.core.sam.stages import StageInputCapture, run_stages, stage_count
from napari_sam_peft.core.training.estimate import estimate_training, first_trained_stage
from napari_sam_peft.core.training.loop import TrainingConfig, train
from tests.conftest import sam_forward


@dataclass(frozen=True)
class ToyArchitecture(Architecture):
    """The toy encoder's own fields; SAM's decoder sizes come from the base class."""

    family: ClassVar[str] = "toy"

    embed_dim: int = 32
    num_heads: int = 2
    depths: tuple[int, ...] = (2, 2)

    @property
    def depth(self) -> int:
        return sum(self.depths)

    @property
    def embedding_size(self) -> int:
        return self.img_size // 8


TOY = ToyArchitecture(
    img_size=64, prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2, iou_head_hidden_dim=32, name="toy"
)


class ToyAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim)  # per head: q | k | v
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).view(b, n, self.heads, -1).transpose(1, 2).split(c // self.heads, dim=-1)
        return self.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class ToyMlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ToyBlock(nn.Module):
    """Takes and gives (N, H, W, C), like SAM's ViT blocks."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln_a, self.mixer = nn.LayerNorm(dim), ToyAttention(dim, heads)
        self.ln_b, self.ffn = nn.LayerNorm(dim), ToyMlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        t = x.reshape(b, h * w, c)
        t = t + self.mixer(self.ln_a(t))
        return (t + self.ffn(self.ln_b(t))).reshape(b, h, w, c)


class ToyStage(nn.Module):
    def __init__(self, depth: int, dim: int, heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ToyBlock(dim, heads) for _ in range(depth))


class ToyEncoder(nn.Module):
    def __init__(self, a: ToyArchitecture) -> None:
        super().__init__()
        self.img_size = a.img_size
        self.stem = nn.Conv2d(3, a.embed_dim, kernel_size=4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, a.embed_dim, a.img_size // 4, a.img_size // 4) * 0.02)
        self.stages = nn.ModuleList(ToyStage(d, a.embed_dim, a.num_heads) for d in a.depths)
        self.merge = nn.Conv2d(a.embed_dim, a.embed_dim, kernel_size=2, stride=2)
        self.neck = nn.Conv2d(a.embed_dim, a.prompt_embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (self.stem(x) + self.pos).permute(0, 2, 3, 1)
        for block in self.stages[0].blocks:
            x = block(x)
        x = self.merge(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        for block in self.stages[1].blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


class ToyFamily(SamOneModel):
    """The whole of what the package needs to know about the toy encoder."""

    name = "toy"
    layout = BlockLayout(
        attention="mixer",
        qkv="mixer.to_qkv",
        attention_out="mixer.out",
        mlp="ffn",
        mlp_linears=("ffn.fc1", "ffn.fc2"),
        norms=("ln_a", "ln_b"),
    )
    stem = "stem"

    def owns(self, encoder: nn.Module) -> bool:
        return isinstance(encoder, ToyEncoder)

    def recognises(self, state: dict) -> bool:
        return "image_encoder.pos" in state

    def architecture_from_dict(self, values: dict) -> ToyArchitecture:
        return ToyArchitecture.from_dict(values)

    def infer_architecture(self, state: dict, name: str) -> ToyArchitecture:
        depths = tuple(
            len({k.split(".")[4] for k in state if k.startswith(f"image_encoder.stages.{i}.blocks.")})
            for i in (0, 1)
        )
        return ToyArchitecture(
            img_size=state["image_encoder.pos"].shape[-1] * 4,
            embed_dim=state["image_encoder.stem.weight"].shape[0],
            depths=depths,
            prompt_embed_dim=state["image_encoder.neck.weight"].shape[0],
            name=name,
            **decoder_fields(state),
        )

    def build_encoder(self, architecture: Any) -> ToyEncoder:
        return ToyEncoder(architecture)

    def global_blocks(self, architecture: Any) -> tuple[int, ...]:
        return tuple(range(architecture.depth))

    def block_paths(self, encoder: ToyEncoder) -> list[str]:
        return [
            f"stages.{s}.blocks.{b}" for s, stage in enumerate(encoder.stages) for b in range(len(stage.blocks))
        ]

    def qkv_groups(self, qkv: nn.Module) -> int:
        return TOY.num_heads

    def stages(self, encoder: ToyEncoder) -> list[tuple[str, ...]]:
        first, second = self.block_paths(encoder)[:2], self.block_paths(encoder)[2:]
        return [
            ("stem", "pos"),
            *[(p,) for p in first],
            ("merge", second[0]),
            *[(p,) for p in second[1:]],
            ("neck",),
        ]

    def stage_functions(self, encoder: ToyEncoder) -> list:
        first, second = encoder.stages[0].blocks, encoder.stages[1].blocks
        return [
            lambda x: (encoder.stem(x) + encoder.pos).permute(0, 2, 3, 1),
            *first,
            lambda x: second[0](encoder.merge(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)),
            *second[1:],
            lambda x: encoder.neck(x.permute(0, 3, 1, 2)),
        ]

    def stage_entry(self, encoder: ToyEncoder, stage: int) -> tuple[nn.Module, Any]:
        entries = [(encoder.stem, lambda x: x), (encoder.stages[0].blocks[0], lambda x: x)]
        entries += [(encoder.stages[0].blocks[1], lambda x: x), (encoder.merge, _channels_last)]
        entries += [(encoder.stages[1].blocks[1], lambda x: x), (encoder.neck, _channels_last)]
        return entries[stage]

    def input_size(self, encoder: ToyEncoder) -> int:
        return encoder.img_size

    def model_input(self, sam: nn.Module, image: np.ndarray) -> torch.Tensor:
        rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        tensor = torch.as_tensor(rgb, dtype=torch.float32).permute(2, 0, 1)[None]
        scale = sam.image_encoder.img_size / max(image.shape[:2])
        size = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        return sam.preprocess(F.interpolate(tensor, size=size, mode="bilinear", align_corners=False))

    def encoder_cost(self, architecture: Any) -> EncoderCost:
        tokens, d = (architecture.img_size // 4) ** 2, architecture.embed_dim
        block = StageCost("block", 2 * 7 * tokens * d * d, 4 * tokens * tokens * d, tokens * d * 16)
        return EncoderCost(
            (StageCost("stem", 0.0), *[block] * 4, StageCost("neck", 2 * tokens * d * d)), tokens**2
        )

    def relative_compute(self, architecture: Any) -> float:
        return 0.001


CPU_PRESETS = [p for p in PRESETS if p != "qlora"]
TOY_STAGES = 6  # stem, two blocks, patch merging with the third block, the fourth block, neck
LATE_STAGE = 3  # late = blocks 2-3; block 2 shares stage 3 with the patch merging before it


@pytest.fixture(autouse=True)
def toy_family(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "toy", ToyFamily())  # the one registry row a family adds


@pytest.fixture
def toy_model() -> LoadedModel:
    torch.manual_seed(0)
    sam = build_sam(TOY)
    return LoadedModel(sam=sam, identity=model_identity(sam, "toy"), architecture=TOY, source="test")


def test_the_toy_family_builds_a_working_sam(toy_model):
    out = sam_forward(toy_model.sam, TOY.img_size)
    assert out["masks"].shape[-1] == 4 * TOY.embedding_size and torch.isfinite(out["masks"]).all()
    assert registry.family_of(toy_model.sam).name == "toy"


@pytest.mark.parametrize("split", range(TOY_STAGES + 1))
def test_stages_in_two_runs_equal_the_whole_encoder_and_capture_their_inputs(toy_model, split):
    assert stage_count(toy_model.sam) == TOY_STAGES
    encoder = toy_model.sam.image_encoder
    x = torch.rand(1, 3, TOY.img_size, TOY.img_size)
    with torch.no_grad(), StageInputCapture(toy_model.sam, split) as capture:
        whole = encoder(x)
    with torch.no_grad():
        kept = run_stages(encoder, x, 0, split)
        assert torch.equal(run_stages(encoder, kept, split), whole)
    assert torch.equal(capture.captured, kept)


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_every_preset_attaches_to_the_families_named_layers_and_detaches_exactly(toy_model, preset):
    sam = toy_model.sam
    base = {k: v.clone() for k, v in sam.state_dict().items()}
    before = sam_forward(sam, TOY.img_size)
    handle = attach(sam, spec_from_preset(preset, TOY.depth))
    after = sam_forward(sam, TOY.img_size)
    assert all((after[k] - before[k]).abs().max() <= 1e-5 for k in before)
    encoder = [base_name(n) for n in handle.trainable_names if n.startswith("image_encoder.")]
    named = ("mixer.", "ffn.", "ln_a.", "ln_b.", "stem.", "pos", "merge.", "neck.")
    assert all(any(part in n for part in named) for n in encoder), encoder
    if spec_from_preset(preset, TOY.depth).method in ("lora", "fact", "ssf"):
        assert any("mixer.to_qkv." in n for n in handle.trainable_names)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.05)
    if preset != "adaptformer":
        plain = build_sam(TOY)
        plain.load_state_dict(handle.merged_state_dict(), strict=True)
        merged, attached = sam_forward(plain, TOY.img_size), sam_forward(sam, TOY.img_size)
        assert all(torch.allclose(merged[k], attached[k], atol=1e-4) for k in merged)
    handle.detach()
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in base.items())


def test_lora_on_v_changes_only_the_v_channels_of_each_head(toy_model):
    qkv = toy_model.sam.image_encoder.stages[0].blocks[0].mixer.to_qkv
    x = torch.rand(5, TOY.embed_dim)
    with torch.no_grad():
        base = qkv(x).view(5, TOY.num_heads, 3, -1)
    handle = attach(toy_model.sam, spec_from_preset("lora", TOY.depth, targets=("v",)))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.1)
        adapted = toy_model.sam.image_encoder.stages[0].blocks[0].mixer.to_qkv(x).view(5, TOY.num_heads, 3, -1)
    assert torch.equal(adapted[:, :, :2], base[:, :, :2])  # q and k of every head
    assert not torch.equal(adapted[:, :, 2], base[:, :, 2])


def test_training_runs_only_from_the_first_adapted_stage(toy_model):
    spec = spec_from_preset("late_lora", TOY.depth)
    assert first_trained_stage(spec, TOY) == LATE_STAGE
    samples = [(s.image, s.labels) for s in make_series("nuclei", 2, seed=0, shape=(64, 64))]
    handle = attach(toy_model.sam, spec)
    assert frozen_prefix_stages(toy_model.sam) == LATE_STAGE
    inputs = StageInputs(toy_model.sam, [samples[0][0]], LATE_STAGE)
    with torch.no_grad():
        whole = toy_model.sam.image_encoder(model_input(toy_model.sam, samples[0][0]))
        assert torch.equal(inputs.features(0), whole)
    handle.detach()
    config = TrainingConfig(steps=2, lr=1e-3, objects_per_image=2, sub_iterations=1, validate_every=2)
    adapter = train(toy_model, spec, samples[:1], samples[1:], config)
    assert adapter.spec == spec and any("mixer.to_qkv.lora_" in k for k in adapter.tensors)


def test_counts_and_the_estimate_use_the_family(toy_model):
    late = spec_from_preset("late_lora", TOY.depth)
    assert count_trainable_parameters(late, TOY) == attach(toy_model.sam, late).num_trainable()
    cheap, dear = (estimate_training(spec_from_preset(p, TOY.depth), TOY) for p in ("freeze_encoder", "lora"))
    assert 0 < cheap.seconds_per_step < dear.seconds_per_step and cheap.first_trained_stage == TOY_STAGES


def test_model_and_adapter_files_record_and_restore_the_family(toy_model, tmp_path):
    loaded = load_model(save_model(toy_model, tmp_path / "toy.safetensors"), device="cpu")
    assert loaded.architecture == TOY and loaded.identity == toy_model.identity
    assert same_weight_shapes(infer_architecture(toy_model.sam.state_dict()), TOY)  # decoder heads: not in shapes
    handle = attach(toy_model.sam, spec_from_preset("lora", TOY.depth, rank=2))
    path = Adapter.from_attached(handle, toy_model).save(tmp_path / "toy_lora.safetensors")
    handle.detach()
    adapter = Adapter.load(path)
    assert adapter.architecture == TOY and json.loads(adapter.architecture.to_json())["family"] == "toy"
    adapter.attach_to(loaded)
