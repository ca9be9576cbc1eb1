"""The base model an adapter was trained on, found from the adapter itself.

An adapter file records its base model's name and the hash of its weights. A model napari-sam-peft knows
by name (a bundled model, or a micro_sam registry name) loads by that name; a model read from a file is
found through the ``run.json`` that the training run wrote beside the adapter. Either way the loaded
weights must hash to the recorded identity, so an export can never merge an adapter into another model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import SamPeftError
from ..peft import Adapter, AdapterMismatchError
from ..sam.loading import BUNDLED_MODELS, LoadedModel, known_model_names, load_model
from ..training.runs import RECORD_NAME, read_run


def load_adapter_base(
    adapter: Adapter,
    adapter_path: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
) -> LoadedModel:
    """Load the base model ``adapter`` was trained on.

    Parameters
    ----------
    adapter, adapter_path
        The adapter and its file (whose folder may hold the run's ``run.json``).
    model
        A model the user named (registry name, bundled name or file): it must be the adapter's base.
        ``None``: the adapter's recorded base, by name or by the file its run record names.
    device
        Where to load it.

    Raises
    ------
    AdapterMismatchError
        If ``model`` (or the model found under the recorded name) has other weights than the adapter's base.
    SamPeftError
        If the base model cannot be found without ``model`` (a file that no run record names), or the
        loading fails (:func:`.load_model`'s errors: a registry model that is offline names the file to place).
    """
    recorded = adapter.base_model
    name = Path(adapter_path).name
    if model is not None:
        loaded = load_model(model, device=device)
        if loaded.identity.content_hash != recorded.content_hash:
            raise AdapterMismatchError(
                f"{name} was trained on base model {recorded.name!r} ({recorded.content_hash[:12]}), not on "
                f"{os.fspath(model)!r} ({loaded.identity.content_hash[:12]}): leave out --model to use the "
                "adapter's own base model, or give that one."
            )
        return loaded
    candidates = [recorded.name] if _known_by_name(recorded.name) else []
    recorded_file = _model_of_run(Path(adapter_path))
    if recorded_file is not None and recorded_file not in candidates:
        candidates.append(recorded_file)
    for candidate in candidates:
        loaded = load_model(candidate, device=device)
        if loaded.identity.content_hash == recorded.content_hash:
            return loaded
    tried = f" ({', '.join(map(repr, candidates))} has other weights)" if candidates else ""
    raise SamPeftError(
        f"{name} was trained on base model {recorded.name!r} ({recorded.content_hash[:12]}), which "
        f"napari-sam-peft cannot find by itself{tried}: give it with --model FILE."
    )


def _known_by_name(name: str) -> bool:
    if name in BUNDLED_MODELS:
        return True
    try:
        return name in known_model_names()
    except Exception:  # noqa: BLE001 - no registry (micro_sam missing or broken): not a name we know
        return False


def _model_of_run(adapter_path: Path) -> str | None:
    """The model the run that wrote ``adapter_path`` trained on, from its ``run.json`` (None: no record)."""
    record_path = adapter_path.parent / RECORD_NAME
    if not record_path.is_file():
        return None
    try:
        record = read_run(record_path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    model = record.model
    return str(model) if model else None
