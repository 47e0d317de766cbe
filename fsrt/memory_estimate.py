"""Memory a model run needs, estimated from its exact complexity before anything is allocated.

A 100000-pixel input or a billion-fold scaled model does not fail cleanly once tensors are
allocated: the allocator raises deep inside PyTorch, or the machine starts swapping. The
analytic complexity (``fsrt.complexity``) gives, to the element, the parameter count, every
part's output shape and the activations of a forward pass, so commands can compare a lower
bound of the memory a run needs with the memory available and refuse with the numbers.

The estimates are lower bounds (real runs add workspaces, allocator slack and framework
overhead), so a refusal is certain to be right; passing the check does not promise success.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fsrt.complexity import complexity_breakdown
from fsrt.errors import FsrtError
from fsrt.spec import ModelSpec

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """A lower bound of the bytes a run needs: weights (with optimizer state when training) plus
    the activations that are necessarily alive at once."""

    kind: str  # "inference" or "training"
    weights_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        """Weights plus activations."""
        return self.weights_bytes + self.activation_bytes

    def describe(self) -> str:
        """``"12.3 GiB (0.02 GiB weights + 12.3 GiB activations)"``."""
        return (f"{gib(self.total_bytes)} ({gib(self.weights_bytes)} weights + {gib(self.activation_bytes)} "
                f"activations)")


def gib(n: float) -> str:
    """Bytes as GiB with three significant figures (``0.0123 GiB``, ``298 GiB``)."""
    return f"{n / GIB:.3g} GiB"


def inference_memory(spec: ModelSpec, batch: int = 1, resolution: int | None = None,
                     bytes_per_value: int = 4) -> MemoryEstimate:
    """Lower bound for one forward pass: every weight, plus the input batch and the largest part
    output (the stem's, a stage's or the head's), which are alive at the same moment.

    ``bytes_per_value`` is 4 for fp32, 2 for fp16/bf16, 8 for a float64 reference.
    """
    bd = complexity_breakdown(spec, resolution)
    image = 3 * bd.resolution**2
    largest = max(math.prod(p.shape) for p in bd.parts)
    return MemoryEstimate("inference", bd.total.params * bytes_per_value,
                          batch * (image + largest) * bytes_per_value)


def training_memory(spec: ModelSpec, batch: int, resolution: int | None = None, bytes_per_value: int = 4,
                    weight_copies: int = 3) -> MemoryEstimate:
    """Lower bound for one training step: ``weight_copies`` fp32 copies of the parameters
    (weights, gradients, SGD momentum: 3; add one for an EMA), plus the input batch and every
    activation the forward pass keeps for the backward pass (the outputs of every conv, FC and
    pool, which ``fsrt.complexity`` counts exactly) at ``bytes_per_value`` (2 under AMP).
    """
    bd = complexity_breakdown(spec, resolution)
    total = bd.total
    return MemoryEstimate("training", total.params * 4 * weight_copies,
                          batch * (3 * bd.resolution**2 + total.acts) * bytes_per_value)


def available_memory(device: str = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device`` (``cpu`` or ``cuda[:N]``), or None when
    unknown. CPU: the kernel's MemAvailable, lowered by a cgroup memory limit when one is set."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.mem_get_info(index)[0])
    candidates = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(candidates) if candidates else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, then v1), if it has a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # v1 writes a huge number for "no limit"
            return max(0, int(limit) - usage)
    return None


def check_fits(estimate: MemoryEstimate, device: str, what: str, advice: str) -> None:
    """Refuse (``FsrtError``) a run whose lower-bound ``estimate`` exceeds the memory available on
    ``device``; ``what`` names the run (``"RegNetX-200MF at 100000 px, batch 1"``), ``advice``
    says what to lower. Nothing happens when the available memory is unknown."""
    avail = available_memory(device)
    if avail is not None and estimate.total_bytes > avail:
        where = "CPU" if device == "cpu" else device
        raise FsrtError(f"{what} needs at least {estimate.describe()} of {where} memory for {estimate.kind}, "
                        f"but {gib(avail)} is available; {advice}")


def check_training_fits(spec: ModelSpec, batch: int, resolution: int | None, device: str, amp: bool = False,
                        ema: bool = False) -> MemoryEstimate:
    """For ``fsrt train``: refuse before allocating when one training step of ``spec`` with
    ``batch`` images per process (the global batch divided by the DDP world size) at
    ``resolution`` cannot fit on ``device`` (``cpu``/``cuda[:N]``); ``amp`` keeps activations in
    16 bits, ``ema`` adds a copy of the weights. Returns the estimate."""
    est = training_memory(spec, batch, resolution, bytes_per_value=2 if amp else 4, weight_copies=4 if ema else 3)
    res = resolution or spec.resolution
    check_fits(est, device if device.startswith("cuda") else "cpu",
               f"training {spec.name or spec.family} at {res} px, batch {batch}", "lower --batch-size or --resolution")
    return est
