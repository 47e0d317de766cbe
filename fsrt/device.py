"""Which torch device a command runs on: the one reading of ``--device auto|cpu|cuda[:N]``."""

from __future__ import annotations

import re

from fsrt.errors import FsrtError

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


def resolve_device(name: str, local_rank: int | None = None):
    """The ``torch.device`` for a ``--device`` value.

    ``auto`` is CUDA when torch sees a GPU, else CPU; ``cuda`` needs a visible GPU. With a
    ``local_rank`` (one process per GPU under torchrun) an index-less CUDA device becomes
    ``cuda:<local_rank>``; without one it stays ``cuda`` (the current device). Anything else
    is a one-line ``FsrtError``.
    """
    import torch

    text = str(name).strip().lower()
    if not _DEVICE_RE.match(text):
        raise FsrtError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    elif text.startswith("cuda") and not torch.cuda.is_available():
        raise FsrtError(f"--device {text} but torch sees no CUDA GPU; use --device cpu (or auto)")
    if text == "cuda" and local_rank is not None:
        text = f"cuda:{local_rank}"
    dev = torch.device(text)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise FsrtError(f"--device {text} but torch sees {torch.cuda.device_count()} CUDA GPU(s), "
                        f"numbered from 0; use --device cuda:0 (or set CUDA_VISIBLE_DEVICES)")
    return dev


def use_device(device: str) -> None:
    """Make ``device`` PyTorch's current CUDA device when it names one (``cuda:N``): synchronize,
    CUDA events, memory statistics and device properties read the current device, which must be
    the one the work runs on. A no-op for ``cpu`` and for an index-less ``cuda`` (already current)."""
    text = str(device)
    if text.startswith("cuda:"):
        import torch

        torch.cuda.set_device(int(text.split(":", 1)[1]))
