"""Peak memory of a measured point: CUDA max-allocated on GPU, resident-set growth on CPU.

On Linux the resident-set high-water mark can be reset (``/proc/self/clear_refs``), so the CPU
figure is the peak RSS during one runner's prepare-and-run minus the RSS before it started.
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Context manager measuring peak memory growth in bytes (``.peak_bytes`` after exit)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._resettable = False
        try:
            _CLEAR_REFS.write_text("5")  # reset VmHWM to the current RSS
            self._resettable = True
        except OSError:
            pass
        rss = _status_kb("VmRSS")
        self._base = (rss * 1024) if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated() - self._base)
            return
        hwm = _status_kb("VmHWM") if self._resettable else None
        peak = hwm * 1024 if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.peak_bytes = max(0, peak - self._base)
