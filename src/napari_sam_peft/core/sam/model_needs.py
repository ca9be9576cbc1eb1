"""What each model needs, measured: input size, seconds per embedding on a CPU, memory.

The figures are ``benchmarks/embedding_cost.py``'s (docs/models.md, "What each model needs on a CPU"):
one 512 x 512 image embedded on a 2-core AMD EPYC with native bfloat16, each model in its own process.
The Segment dock shows them under its model list, so a user picks knowing the cost before a download.
GPU seconds are not listed: no GPU measured them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .registry import MICRO_SAM_ARCHITECTURES, is_sam1, micro_sam_base


@dataclass(frozen=True)
class ModelNeeds:
    """One base model's measured needs."""

    family: str
    #: the square input side the encoder takes
    input_size: int
    #: seconds per embedding on the 2-core CPU, float32 and bfloat16
    cpu_seconds: float
    cpu_seconds_bf16: float
    #: the process's resident memory with the model loaded plus the embedding's peak, GiB (float32)
    memory_gib: float

    def describe(self) -> str:
        """One line: family, input, seconds per embedding, memory."""
        return (
            f"{self.family}, {self.input_size} px input; an embedding takes {self.cpu_seconds:.1f} s on a "
            f"2-core CPU ({self.cpu_seconds_bf16:.1f} s in bf16), about {self.memory_gib:.1f} GiB of memory"
        )


#: By base model (micro_sam's finetuned models share their base's needs: ``vit_b_lm`` is ``vit_b``).
MEASURED_NEEDS: dict[str, ModelNeeds] = {
    "lite_medsam": ModelNeeds("SAM 1, TinyViT", 256, 1.49, 0.87, 1.2),
    "vit_t": ModelNeeds("SAM 1, TinyViT", 1024, 1.86, 0.95, 1.3),
    "vit_b": ModelNeeds("SAM 1, ViT-B", 1024, 13.70, 5.33, 1.7),
    "hvit_t": ModelNeeds("SAM 2.1, Hiera tiny", 1024, 2.66, 1.77, 1.7),
    "hvit_s": ModelNeeds("SAM 2.1, Hiera small", 1024, 3.46, 2.19, 1.8),
    "hvit_b": ModelNeeds("SAM 2.1, Hiera base+", 1024, 5.15, 3.53, 1.9),
    "hvit_l": ModelNeeds("SAM 2.1, Hiera large", 1024, 15.60, 7.93, 2.4),
}

#: Models without a measurement, said in words.
UNMEASURED = {
    "demo": "SAM 1, a small ViT for trying the loop (seconds per embedding; it does not segment real images well)",
    "vit_l": "SAM 1, ViT-L, 1024 px input: not measured here (about 3.5x vit_b's compute)",
    "vit_h": "SAM 1, ViT-H, 1024 px input: not measured here (about 7x vit_b's compute)",
}


def model_needs_line(name: str) -> str:
    """What model ``name`` (a registry or bundled name) needs, in one line (and that Meta's ``sam2`` package
    is missing, for a SAM 2.1 model where it is); "" for a name not known here."""
    base = name if name in MEASURED_NEEDS or name in UNMEASURED else micro_sam_base(name)
    if base not in MEASURED_NEEDS:
        return UNMEASURED.get(base or "", "")
    line = MEASURED_NEEDS[base].describe()
    architecture = MICRO_SAM_ARCHITECTURES.get(base)
    if architecture is not None and not is_sam1(architecture) and importlib.util.find_spec("sam2") is None:
        line += "; needs Meta's sam2 package, not installed (scripts/install.sh installs it)"
    return line
