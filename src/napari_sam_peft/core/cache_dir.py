"""Where napari-sam-peft keeps what it can compute again: embeddings, precision probe figures."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$NAPARI_SAM_PEFT_CACHE`` or the user cache folder (e.g. ``~/.cache/napari-sam-peft``)."""
    env = os.environ.get("NAPARI_SAM_PEFT_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-sam-peft"))
