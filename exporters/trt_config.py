"""Everything around a TensorRT build that does not need TensorRT: shapes, paths, sidecar, checks.

``trt_build`` is the only module importing ``tensorrt``; it receives a ``TrtBuildSettings``
made here, so profile shapes, precision handling, timing-cache locations and the sidecar
JSON are all testable on machines without TensorRT or a GPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from fsrt.errors import FsrtError
from fsrt.io import cache_dir
from fsrt.names import slug
from fsrt.sizes import parse_bytes

TRT_INSTALL_HINT = ("install it with: pip install 'fsrt[trt]' (NVIDIA's tensorrt wheels; needs an NVIDIA GPU, "
                    "driver and CUDA)")
DEFAULT_WORKSPACE = "4G"  # binary units (fsrt.sizes.parse_bytes): 4 GiB
DEFAULT_OPT_LEVEL = 3


@dataclass(frozen=True)
class BatchSpec:
    """Batch sizes of an export: a static batch (min == opt == max) or a dynamic range."""

    min: int
    opt: int
    max: int
    dynamic: bool

    @property
    def example(self) -> int:
        """Batch of the example input used for export. For a dynamic batch it is the smallest
        size >= 2 in range (the exporter would specialize a batch of 1 to a constant), kept small
        because tracing and the parity reference cost grow with it."""
        return self.opt if not self.dynamic else max(2, self.min)

    def parity_batches(self) -> tuple[int, ...]:
        """Batches the parity check runs: the static batch, or for a dynamic batch the minimum
        and one size other than the export example (so the dynamic dimension is exercised)."""
        if not self.dynamic:
            return (self.opt,)
        return tuple(sorted({self.min, min(self.max, self.example + 1)}))


def parse_dynamic_batch(text: str) -> tuple[int, int, int]:
    """Parse ``MIN:OPT:MAX`` (e.g. ``1:8:32``) into three integers with 1 <= MIN <= OPT <= MAX, MAX >= 2."""
    parts = str(text).split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        lo, opt, hi = (int(p) for p in parts)
    except ValueError:
        raise FsrtError(f"cannot read dynamic batch {text!r}: use MIN:OPT:MAX, e.g. 1:8:32") from None
    if not 1 <= lo <= opt <= hi:
        raise FsrtError(f"dynamic batch {text!r} must satisfy 1 <= MIN <= OPT <= MAX")
    if hi < 2:
        raise FsrtError(f"dynamic batch {text!r} has MAX < 2: use a static --batch 1 instead")
    return lo, opt, hi


def batch_spec(batch: int | None = None, dynamic_batch=None) -> BatchSpec:
    """The ``BatchSpec`` for ``batch`` (static) or ``dynamic_batch`` (text or (min, opt, max))."""
    if dynamic_batch is not None:
        if batch is not None:
            raise FsrtError("give either a static batch (--batch) or a dynamic one (--dynamic-batch), not both")
        if isinstance(dynamic_batch, str):
            lo, opt, hi = parse_dynamic_batch(dynamic_batch)
        else:
            lo, opt, hi = parse_dynamic_batch(":".join(str(int(v)) for v in dynamic_batch))
        return BatchSpec(lo, opt, hi, True)
    b = 1 if batch is None else batch
    if not isinstance(b, int) or isinstance(b, bool) or b < 1:
        raise FsrtError(f"batch must be a positive integer, got {batch!r}")
    return BatchSpec(b, b, b, False)


def profile_shapes(chw: tuple[int, int, int], batch: BatchSpec) -> dict[str, tuple[int, ...]]:
    """Optimization-profile shapes ``{"min", "opt", "max"}`` of the NCHW input for ``batch``."""
    return {"min": (batch.min, *chw), "opt": (batch.opt, *chw), "max": (batch.max, *chw)}


def timing_cache_path(explicit: str | Path | None, gpu_name: str, trt_version: str) -> Path:
    """Where the timing cache lives. Timing caches are only valid for one GPU model and one
    TensorRT version, so the default name carries both; an explicit path is used as given."""
    if explicit:
        return Path(explicit)
    return cache_dir() / "trt" / f"timing-{slug(gpu_name.lower())}-trt{slug(trt_version.lower())}.cache"


def default_engine_path(onnx_path: str | Path) -> Path:
    """The engine file beside the ONNX file: ``model.onnx`` -> ``model.engine``."""
    return Path(onnx_path).with_suffix(".engine")


def sidecar_path(engine_path: str | Path) -> Path:
    """The JSON sidecar of an engine: ``model.engine`` -> ``model.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class TrtBuildSettings:
    """Everything ``trt_build.build_engine`` needs, decided without TensorRT."""

    onnx_path: Path
    engine_path: Path
    input_name: str
    chw: tuple[int, int, int]
    batch: BatchSpec
    precision: str
    workspace_bytes: int
    timing_cache: Path | None
    opt_level: int = DEFAULT_OPT_LEVEL
    plugin_domains: tuple[str, ...] = ()  # custom ONNX domains (e.g. "fsrt") whose plugins must be registered
    # before TensorRT parses the graph (--triton-group-conv graphs hold fsrt nodes)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Optimization-profile shapes (min/opt/max) of the input."""
        return profile_shapes(self.chw, self.batch)


@dataclass(frozen=True)
class BuiltEngine:
    """What a TensorRT build returns: the serialized engine, the grown timing cache, the
    TensorRT version and the build time (defined here so fakes need no TensorRT)."""

    engine: bytes
    timing_cache: bytes | None
    trt_version: str
    seconds: float


def make_settings(onnx_path, *, engine_path=None, batch: BatchSpec, precision: str, workspace=DEFAULT_WORKSPACE,
                  timing_cache=None, opt_level: int = DEFAULT_OPT_LEVEL) -> TrtBuildSettings:
    """Validate and assemble build settings from an exported ONNX file (reads its input and type)."""
    import onnx

    from fsrt.precision import get_precision, precision_of_elem_type

    if not 0 <= int(opt_level) <= 5:
        raise FsrtError(f"builder optimization level must be 0..5, got {opt_level}")
    model = onnx.load(str(onnx_path), load_external_data=False)
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    chw = tuple(int(d.dim_value) for d in dims[1:])
    if len(chw) != 3 or min(chw) <= 0:
        raise FsrtError(f"{onnx_path}: input {inp.name} is not NCHW with static C, H, W")
    graph_precision = precision_of_elem_type(inp.type.tensor_type.elem_type).name
    wanted = get_precision(precision).name
    if graph_precision != wanted:
        raise FsrtError(f"{onnx_path} is an {graph_precision} graph but a {wanted} engine was asked for: TensorRT "
                        f"is strongly typed, so export with --precision {wanted}")
    first = dims[0]
    if first.dim_value and (batch.dynamic or first.dim_value != batch.opt):
        raise FsrtError(f"{onnx_path} has a static batch {first.dim_value}; export with --dynamic-batch for a range")
    domains = tuple(sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}))
    return TrtBuildSettings(Path(onnx_path), Path(engine_path or default_engine_path(onnx_path)), inp.name, chw,
                            batch, wanted, parse_bytes(workspace, "TensorRT workspace"),
                            Path(timing_cache) if timing_cache else None, int(opt_level), domains)


def gpu_name() -> str | None:
    """Name of CUDA device 0, or ``None`` without a CUDA GPU."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def trt_missing() -> str | None:
    """Why a TensorRT engine cannot be built here (one line with the fix), or ``None`` if it can."""
    import torch

    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed; {TRT_INSTALL_HINT}"
    if not torch.cuda.is_available():
        return ("no CUDA GPU is visible (torch.cuda.is_available() is False): TensorRT builds engines on an NVIDIA "
                "GPU; install a CUDA build of torch and the NVIDIA driver, then retry on the GPU machine")
    return None


def network_flag_names(trt_version: str, available: set[str]) -> list[str]:
    """Network-creation flags to set: ``STRONGLY_TYPED`` on TensorRT 10 (opt-in there, so the
    engine keeps the ONNX graph's precision); on 11+ networks are always strongly typed and the
    flag is ignored, so nothing is set."""
    major = int(str(trt_version).split(".")[0])
    return ["STRONGLY_TYPED"] if major < 11 and "STRONGLY_TYPED" in available else []


def sidecar(settings: TrtBuildSettings, *, trt_version: str, gpu: str, build_seconds: float, engine_bytes: int,
            timing_cache_used: str | None) -> dict:
    """The JSON document written beside an engine: what it was built from and for."""
    from fsrt import __version__

    return {
        "engine": settings.engine_path.name,
        "onnx": str(settings.onnx_path),
        "input": {"name": settings.input_name, "shapes": {k: list(v) for k, v in settings.shapes.items()},
                  "dynamic_batch": settings.batch.dynamic},
        "precision": settings.precision,
        "strongly_typed": True,
        "workspace_bytes": settings.workspace_bytes,
        "builder_optimization_level": settings.opt_level,
        "timing_cache": timing_cache_used,
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "build_seconds": round(build_seconds, 3),
        "engine_bytes": engine_bytes,
        "fsrt_version": __version__,
    }

