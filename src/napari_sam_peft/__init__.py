"""napari-sam-peft: annotate with Segment Anything and finetune it, live, inside napari."""

from napari_sam_peft._triton_guard import guard_triton_import

__version__ = "0.1.0"

# Before anything of ours imports torchvision: napari may already have loaded Mesa's LLVM.
TRITON_IMPORT = guard_triton_import()

__all__ = ["__version__"]
