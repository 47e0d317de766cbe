"""DDP plumbing for ``torchrun``: process-group setup (gloo on CPU, NCCL on GPU), rank
helpers and metric reduction. A plain (non-torchrun) run is world size 1 and never touches
``torch.distributed``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world > 1


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Dist(rank, world, local)


def all_reduce_sum(values: list[float], device: torch.device, d: Dist) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity for one process)."""
    if not d.enabled:
        return list(values)
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_flag(flag: bool, device: torch.device, d: Dist) -> bool:
    """True on every rank if any rank says True (used to stop together)."""
    return bool(all_reduce_sum([1.0 if flag else 0.0], device, d)[0] > 0)


def barrier(d: Dist) -> None:
    """Wait for every rank."""
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    """Leave the process group if this process joined one (safe to call always)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def resolve_local_rank() -> int:
    """``LOCAL_RANK`` set by torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def sync_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank, so all ranks evaluate and
    average the same model (DDP only syncs them at the start of each forward)."""
    if not d.enabled:
        return
    import torch.distributed as dist

    for b in module.buffers():
        dist.broadcast(b, 0)
