"""napari-sam-peft: annotate with Segment Anything and finetune it, live, inside napari."""

__version__ = "0.1.0"

__all__ = ["__version__"]
