"""Write the bundled demo model's weights: src/napari_sam_peft/data/demo_sam.safetensors.

The demo model is SAM's architecture at a small size (see ``core.architecture.DEMO``).
This script initialises it from a fixed seed, so the file is reproducible:

    python scripts/build_demo_model.py --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_sam_peft.core.sam.architecture import DEMO, build_sam
from napari_sam_peft.core.sam.loading import model_identity, save_model

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "napari_sam_peft" / "data" / "demo_sam.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    sam = build_sam(DEMO)
    save_model(sam, args.out, name="demo", architecture=DEMO)
    n_params = sum(p.numel() for p in sam.parameters())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {n_params:,} parameters)")
    print(f"identity {model_identity(sam, 'demo').key}")


if __name__ == "__main__":
    main()
