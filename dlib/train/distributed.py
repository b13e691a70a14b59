"""Several processes, one model: DistributedDataParallel under ``torchrun``.

    torchrun --nproc_per_node=N -m dlib.train --recipe NAME    # the same recipe, N processes

``torchrun`` starts N copies of the command and tells each its place through the environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). Each process joins the
process group (gloo on the CPU, nccl on CUDA, one GPU per process), holds the same model, draws the
same global batch from the same seeded generator and keeps its own slice of it (``losses.Shard``);
DistributedDataParallel averages the gradients, so every process takes the same optimiser step and
the run follows the single-process run with the same global batch (to float rounding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from dlib.losses import ONE_PROCESS, Shard
from dlib.utils import default_device


@contextmanager
def process_group(device: torch.device | None = None) -> Iterator[tuple[Shard, torch.device]]:
    """Yield (this process's Shard, its device). Alone: ``Shard()`` and ``device`` (default: CUDA if there).

    Under torchrun (``WORLD_SIZE`` > 1) join the process group for the duration, on ``cuda:LOCAL_RANK``
    when the device is CUDA; a group that is already initialised is used as it is and left open.
    """
    device = torch.device(device) if device is not None else default_device()
    if dist.is_available() and dist.is_initialized():
        yield Shard(dist.get_rank(), dist.get_world_size()), device
        return
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield ONE_PROCESS, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield Shard(dist.get_rank(), dist.get_world_size()), device
        dist.barrier()  # rank 0 still writes the last checkpoint: leave together, or gloo's threads abort at exit
    finally:
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, shard: Shard, device: torch.device, find_unused: bool = False) -> torch.nn.Module:
    """``model`` itself for one process; else DistributedDataParallel around it (BatchNorm synchronised on CUDA).

    ``find_unused``: some parameters may get no gradient in a step (a learned null prompt that no
    example of this process's slice drew); DDP then has to look for them after each forward pass.
    """
    if shard.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":  # SyncBatchNorm needs CUDA; on the CPU each process keeps its own batch statistics
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def mean_over_processes(x: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The mean of ``x`` over all processes (every process must call it at the same point)."""
    if shard.world > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= shard.world
    return x


def is_main_process() -> bool:
    """Rank 0, the process that writes checkpoints, cards, grids and output (also after the group is closed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
