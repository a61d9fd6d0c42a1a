"""Data-parallel training through torch.distributed, launched by ``torchrun`` (no custom launcher).

``torchrun --nproc-per-node N -m contextseg train CONFIG`` (or ``--nnodes``/``--rdzv-endpoint`` for
several machines) sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; `init_distributed` reads
them and joins the process group (nccl on GPU, gloo on CPU).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "cleanup_distributed", "is_distributed", "get_rank", "get_world_size", "is_main_process", "barrier", "resolve_device"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` = this process's GPU (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: contextseg runs on auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); return whether we did."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size <= 1 or is_distributed():
        return is_distributed()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def cleanup_distributed() -> None:
    if is_distributed():
        dist.destroy_process_group()
