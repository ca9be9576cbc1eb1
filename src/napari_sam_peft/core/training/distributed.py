"""Training on several processes under ``torchrun``: joining the group, ranks, and stopping together."""

from __future__ import annotations

import os

import torch


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def any_rank(flag: bool, world: int) -> bool:
    """Under several ranks, stop when any rank wants to (all must run the same number of steps)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value)
    return bool(value.item() > 0)


def setup_distributed(device: str) -> tuple[int, int, str]:
    """Join the process group ``torchrun`` describes; returns (rank, world size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, device
