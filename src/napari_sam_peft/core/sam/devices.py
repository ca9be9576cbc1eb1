"""Choosing the compute device: cuda, then mps, then cpu, unless the user says otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DeviceNotAvailableError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def mps_available() -> bool:
    """Whether this PyTorch build and machine can use Apple's ``mps`` GPU."""
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The device names this machine can use, best first."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    if mps_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    Parameters
    ----------
    requested
        ``None`` or ``"auto"`` picks cuda, then mps, then cpu. ``"cuda"``, ``"cuda:1"``,
        ``"mps"`` or ``"cpu"`` force that device.

    Raises
    ------
    DeviceNotAvailableError
        If the requested device does not exist on this machine.
    """
    import torch

    if requested is None or str(requested) == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as err:
        raise DeviceNotAvailableError(
            f"Unknown device {requested!r}: choose one of {', '.join(DEVICE_CHOICES)}."
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceNotAvailableError(
                "CUDA was requested, but PyTorch sees no NVIDIA GPU on this machine "
                "(or was installed without CUDA support). Choose 'cpu' or 'auto'."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceNotAvailableError(
                f"GPU {device.index} was requested, but this machine has "
                f"{torch.cuda.device_count()} GPU(s). Choose 'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}'."
            )
    elif device.type == "mps":
        if not mps_available():
            raise DeviceNotAvailableError(
                "Apple 'mps' was requested, but it is not available here (it needs an Apple silicon Mac "
                "and a PyTorch build with MPS). Choose 'cpu' or 'auto'."
            )
    elif device.type != "cpu":
        raise DeviceNotAvailableError(
            f"Unsupported device {requested!r}: choose one of {', '.join(DEVICE_CHOICES)}."
        )
    return device
