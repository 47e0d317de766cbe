"""fsrt: how CNN scaling strategies turn into deployed latency.

Python API::

    import fsrt
    spec = fsrt.get_spec("RegNetY-400MF")   # zoo name, spec file or checkpoint
    model = fsrt.build_model(spec)           # torch.nn.Module with pycls init
    fsrt.complexity(spec)                    # Complexity(flops=..., params=..., acts=...)
"""

from __future__ import annotations

from fsrt.complexity import Complexity, complexity, complexity_breakdown
from fsrt.errors import CheckFailed, FsrtError
from fsrt.models import build_model
from fsrt.regnet import RegNetParams
from fsrt.source import get_spec
from fsrt.spec import HeadSpec, ModelSpec, StageSpec, StemSpec

__version__ = "0.1.0"

__all__ = [
    "CheckFailed", "Complexity", "FsrtError", "HeadSpec", "ModelSpec", "RegNetParams", "StageSpec",
    "StemSpec", "__version__", "build_model", "complexity", "complexity_breakdown", "get_spec",
]
