"""Data-parallel training on an existing engine: torch.distributed (torchrun), DDP, gloo/NCCL.

The same `train()` runs in one process or under `torchrun --nproc_per_node=N`; this module reads the
torchrun environment, picks gloo on CPU and NCCL on GPU, and gathers embeddings across ranks *with*
gradients so in-batch negatives span the global batch (as sentence-transformers' gather option does).
Gathering uses `torch.distributed.nn.functional.all_gather`, whose backward sums the gradients of
every rank's copy; each rank computes the same global loss, so after DDP's gradient averaging the
update equals one process on the whole global batch.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(timeout_s: int = 1800) -> DistInfo:
    """Join the process group when started by torchrun; a single-process DistInfo otherwise."""
    cuda = torch.cuda.is_available()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo(0, 1, 0, 1, torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", timeout=_dt.timedelta(seconds=timeout_s))
    return DistInfo(
        dist.get_rank(),
        dist.get_world_size(),
        local_rank,
        int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
        device,
    )


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's (b,...) tensor in rank order → (world·b,...), differentiable."""
    if not info.enabled:
        return t
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private API; this public one is autograd-aware on gloo and NCCL.
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(t.contiguous()), dim=0)


def gather_nograd(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's tensor in rank order (labels, text ids). Same-shaped tensors only."""
    if not info.enabled:
        return t
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out, dim=0)


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Elementwise sum over ranks (for logging: losses, token counts)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's picklable object, in rank order (per-rank RNG states for checkpoints)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP over the trainable (LoRA) parameters; the identity in one process."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)
