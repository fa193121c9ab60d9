"""torchrun / DistributedDataParallel helpers: init from the environment, reduce, one writer."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "is_main", "all_reduce_sum"]


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); gloo on CPU, NCCL on
    CUDA. Returns whether training is distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """The one process that writes checkpoints and metrics."""
    return rank() == 0


def all_reduce_sum(value: Any) -> Any:
    """Sum a tensor, numpy array or float over ranks (identity when not distributed)."""
    if not is_distributed():
        return value
    import numpy as np

    tensor = torch.as_tensor(np.asarray(value), dtype=torch.float64).clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    if isinstance(value, np.ndarray):
        return tensor.numpy().astype(value.dtype)
    return float(tensor) if tensor.ndim == 0 else tensor


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    if is_distributed():
        dist.destroy_process_group()


__all__ += ["barrier", "shutdown"]
