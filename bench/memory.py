"""Peak memory of preparing and running one model: resident memory on CPU, the allocator on CUDA.

On CPU the figure is the growth of the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``) while one runner prepares, runs and warms up a model, measured inside
the runtime's own worker process: weights, the runtime's copies and packed forms of them, its
arenas and the activations it keeps (for a training step: gradients, optimizer state and the
activations saved for backward). Free heap memory is handed back to the OS first, so memory an
earlier job freed is not silently reused. Where the high-water mark cannot be reset the figure is
left out (None) rather than guessed. On CUDA it is the caching allocator's peak above what was allocated
before (what torch allocates; a runtime with its own allocator, such as TensorRT, is not seen).
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")

CPU_KIND = "peak resident memory growth (worker process)"
CUDA_KIND = "CUDA allocator peak"


def status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None where unavailable."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def release_free_heap() -> None:
    """Hand memory the C heap holds but no longer uses back to the OS (glibc ``malloc_trim``).

    Without it, a job whose activations fit in memory an earlier job of the same worker freed
    (transient activations, a training step's saved tensors) grows the resident set by nothing,
    and its peak would read low. A no-op where the C library has no ``malloc_trim``.
    """
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the process's peak resident set to its current size; False where Linux does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


class ResidentPeak:
    """Context manager: peak memory growth in bytes over the block (``.peak_bytes``, ``.kind``)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.kind = CUDA_KIND if device.startswith("cuda") else CPU_KIND
        self.peak_bytes: int | None = None

    def __enter__(self) -> ResidentPeak:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        release_free_heap()
        self._resettable = reset_peak_rss()
        rss = status_kb("VmRSS")
        self._base = rss * 1024 if rss is not None else None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated() - self._base)
            return
        hwm = status_kb("VmHWM") if self._resettable else None
        if hwm is not None and self._base is not None:
            self.peak_bytes = max(0, hwm * 1024 - self._base)
