"""SAM 2.1's pretrained weights by micro_sam's names (``hvit_t``, ``hvit_s``, ``hvit_b``, ``hvit_l``).

micro_sam 1.x has no SAM 2.1 models; its dev branch (micro_sam 2) downloads Meta's SAM 2.1
checkpoints with pooch into ``<pooch cache>/micro_sam/v2/models/<name>_sam2.1``. napari-sam-peft
uses the same URLs, hashes and file names, so weights either tool downloaded serve both. Offline,
the message names the file to place there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import ModelNotAvailableError

_META = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
#: name -> (URL of Meta's checkpoint, its SHA-256): micro_sam dev's ``micro_sam/v2/util.py``
SAM2_WEIGHTS: dict[str, tuple[str, str]] = {
    "hvit_t": (
        _META + "sam2.1_hiera_tiny.pt",
        "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    ),
    "hvit_s": (
        _META + "sam2.1_hiera_small.pt",
        "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    ),
    "hvit_b": (
        _META + "sam2.1_hiera_base_plus.pt",
        "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    ),
    "hvit_l": (
        _META + "sam2.1_hiera_large.pt",
        "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
    ),
}


def sam2_model_names() -> list[str]:
    """The SAM 2.1 names napari-sam-peft knows."""
    return list(SAM2_WEIGHTS)


def sam2_weights_path(name: str) -> Path:
    """Where micro_sam dev keeps (and napari-sam-peft looks for) the weights of ``name``."""
    import pooch

    return Path(os.path.expanduser(pooch.os_cache("micro_sam/v2/models"))) / f"{name}_sam2.1"


def fetch_sam2_weights(name: str, say: Callable[[str], None]) -> Path:
    """The local weights of SAM 2.1 model ``name``, downloaded once (hash checked) where missing.

    Raises
    ------
    ModelNotAvailableError
        Offline or on any download failure: one line naming the URL and the file to place.
    """
    import pooch

    url, sha256 = SAM2_WEIGHTS[name]
    path = sam2_weights_path(name)
    if path.exists():
        return path
    say(f"Downloading {name} weights (once) to {path.parent}")
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")
    try:
        fetched = pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=path.name, path=path.parent)
        return Path(fetched)
    except Exception as err:  # noqa: BLE001 - any failure of the downloader means "not available"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelNotAvailableError(
            f"The SAM 2.1 weights of {name!r} are not on this computer and could not be downloaded "
            f"({reason[:160]}). Download {url} and save it as {path}."
        ) from None
    finally:
        logger.setLevel(level)
