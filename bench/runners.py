"""Runners: one interface over every runtime fsrt measures.

A runner says whether it can run here (and why not), prepares a model for a batch size and
precision, and hands the timing harness a no-argument call with its input already bound
(``bind``). The outputs of that very call are what the parity check reads (``output``): the
timed path (CUDA-graph replay, IOBinding, pre-bound TensorRT buffers) is the checked path.
PyTorch runners live here; ONNX-based ones in ``runner_onnx`` and the native TensorRT one in
``runner_trt``. In a sweep each runtime's runners live in a worker process of their own
(``fsrt.bench.worker``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fsrt.errors import FsrtError


@dataclass
class PrepareContext:
    """Everything a runner needs to prepare one model variant.

    ``model`` is the fp32 eval-mode module on CPU (BN statistics calibrated or trained weights),
    loaded on first use so runners that read ONNX never build it; ``onnx_path(precision)``
    returns the variant's ONNX file at a precision for ONNX-based runners.
    """

    spec: object
    batch: int
    precision: str
    device: str
    threads: int
    workdir: Path
    onnx_path: Callable[[str], Path]
    load_model: Callable[[], object]
    channels_last: bool = False
    cuda_graphs: bool = False

    @cached_property
    def model(self):
        """The fp32 module (loaded once)."""
        return self.load_model()


class Runner:
    """Base class. Subclasses set ``name`` and implement ``prepare``, ``bind`` and ``output``.

    Lifecycle: ``prepare(ctx)`` once, ``fn = bind(x)``, then ``fn()`` any number of times
    (the timing harness) with ``output()`` reading what the last ``fn()`` produced, and
    ``close()``.
    """

    name = "runner"
    devices: tuple[str, ...] = ("cpu", "cuda")
    slow_build = False  # multi-minute preparation: left out of ``auto`` on CPU

    def unavailable_reason(self, device: str) -> str | None:
        """None if this runner can run on ``device`` here, else a one-line reason with a fix."""
        kind = "cuda" if device.startswith("cuda") else "cpu"
        if kind not in self.devices:
            return f"{self.name} does not run on {kind}"
        return None

    def prepare(self, ctx: PrepareContext) -> None:
        """Build/compile/load the model for ``ctx.batch`` and ``ctx.precision``."""
        raise NotImplementedError

    needs_onnx = False  # reads the variant's ONNX graph (exported before preparing)
    # Runs through PyTorch. A runtime that does not is timed in a worker that never imports torch,
    # as its deployment would be: 2.6-2.9 s and 270 MB less per worker start, and no second
    # OpenMP runtime or allocator beside the one measured.
    loads_torch = True

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        """The timed call: a no-argument callable running one inference on ``x`` (float32 NCHW,
        bound once, device-resident where the runtime allows)."""
        raise NotImplementedError

    def output(self) -> np.ndarray:
        """The logits the last call of the bound callable produced, as float64 numpy (after
        synchronizing the device)."""
        raise NotImplementedError

    def precision_note(self) -> str:
        """The precision as the runtime actually applies it (recorded with every point)."""
        return getattr(self, "_precision_note", "")

    def close(self) -> None:
        """Release resources."""


def _autocast_dtype(precision: str):
    """The autocast dtype of a precision; None for fp32 (no autocast)."""
    from fsrt.precision import get_precision, torch_dtype

    return None if precision == "fp32" else torch_dtype(get_precision(precision))


class EagerRunner(Runner):
    """PyTorch eager: fp32, or fp16/bf16 autocast; optional channels_last and CUDA graphs."""

    name = "eager"

    def prepare(self, ctx: PrepareContext) -> None:
        import copy

        import torch

        self.device = ctx.device
        configure_cuda(ctx.device)
        self.model = copy.deepcopy(ctx.model).to(ctx.device).eval()
        self.memory_format = torch.channels_last if ctx.channels_last else torch.contiguous_format
        if ctx.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = _autocast_dtype(ctx.precision)
        # --cuda-graphs is the eager runner's: a compiled package (AOTInductor) polls CUDA events on
        # each call, which a capture forbids, and Inductor has graph modes of its own
        self.cuda_graphs = ctx.cuda_graphs and ctx.device.startswith("cuda") and type(self) is EagerRunner
        self._precision_note = "fp32" if self.autocast is None else f"autocast {ctx.precision}"
        if ctx.device.startswith("cuda"):
            self._precision_note += (" (TF32 off)" if self.autocast is None else "") + ", cuDNN autotuned"
        if ctx.channels_last:
            self._precision_note += ", channels_last"

    def _forward(self, x):
        import torch

        with torch.inference_mode():
            if self.autocast is None:
                return self.model(x)
            with torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu", dtype=self.autocast):
                return self.model(x)

    def _to_device(self, x: np.ndarray):
        import torch

        return torch.from_numpy(x).to(self.device).contiguous(memory_format=self.memory_format)

    def bind(self, x: np.ndarray) -> Callable[[], object]:
        import torch

        xt = self._xt = self._to_device(x)  # kept: a captured graph reads this memory on every replay
        if not self.cuda_graphs:
            def run():
                self._out = self._forward(xt)

            return run
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._forward(xt)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self._forward(xt)  # replay rewrites this tensor in place
        self._precision_note += ", CUDA graph"
        return graph.replay

    def output(self) -> np.ndarray:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        return self._out.double().cpu().numpy()

    def close(self) -> None:
        self.model = self._out = self._xt = None


def configure_cuda(device: str) -> None:
    """On CUDA, set PyTorch's backend as a measurement needs it. fp32 convolutions and matmuls are
    fp32: PyTorch runs cuDNN convs in TF32 by default (10-bit mantissa inputs), which puts a
    network's fp32 outputs 1e-3 off the float64 reference and makes "fp32" a different precision on
    GPU than everywhere else. cuDNN picks each conv's algorithm by timing the candidates on its
    first call (``cudnn.benchmark``, as timm's and pycls's benchmarks run), which the warm-up and the
    parity call do before any timed call (its heuristic pick, the default, is not always the
    fastest). Process-wide; each runtime's worker is a process of its own."""
    if device.startswith("cuda"):
        import torch

        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True


def _has_cxx_compiler() -> bool:
    import shutil

    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def _has_c_compiler() -> bool:
    import os
    import shutil

    return bool(os.environ.get("CC")) or any(shutil.which(c) for c in ("gcc", "cc", "clang"))


def _cuda_build_problem(what: str, needs_cxx: bool) -> str | None:
    """Why ``what`` cannot build for CUDA here (Triton builds a C launcher; AOTInductor also
    compiles C++ against the CUDA toolkit's headers), or None."""
    if not _has_c_compiler():
        return f"{what} on CUDA needs a C compiler for Triton's launcher (install gcc)"
    if needs_cxx:
        from torch.utils.cpp_extension import CUDA_HOME

        if not _has_cxx_compiler():
            return f"{what} on CUDA needs a C++ compiler (install g++)"
        if CUDA_HOME is None:
            return f"{what} on CUDA needs the CUDA toolkit's headers (set CUDA_HOME to its folder)"
    return None


class CompileRunner(EagerRunner):
    """``torch.compile`` (Inductor, weights frozen into the graph)."""

    name = "compile"
    slow_build = True

    def unavailable_reason(self, device: str) -> str | None:
        if device.startswith("cuda"):
            return _cuda_build_problem("torch.compile", needs_cxx=False) or super().unavailable_reason(device)
        if not _has_cxx_compiler():
            return "torch.compile on CPU needs a C++ compiler (install g++)"
        return super().unavailable_reason(device)

    def prepare(self, ctx: PrepareContext) -> None:
        import torch

        super().prepare(ctx)
        self.model = torch.compile(self.model, options={"freezing": True})
        self._precision_note += ", inductor freezing"


class AotiRunner(EagerRunner):
    """AOTInductor: ``torch.export`` + ahead-of-time compiled package, loaded and run."""

    name = "aoti"
    slow_build = True

    def unavailable_reason(self, device: str) -> str | None:
        import torch

        if not hasattr(torch._inductor, "aoti_compile_and_package"):
            return f"this torch ({torch.__version__}) has no AOTInductor packaging"
        if device.startswith("cuda"):
            return _cuda_build_problem("AOTInductor", needs_cxx=True) or super().unavailable_reason(device)
        if not _has_cxx_compiler():
            return "AOTInductor on CPU needs a C++ compiler (install g++)"
        return super().unavailable_reason(device)

    def prepare(self, ctx: PrepareContext) -> None:
        import torch

        super().prepare(ctx)
        example = torch.randn(ctx.batch, 3, ctx.spec.resolution, ctx.spec.resolution, device=ctx.device)
        example = example.contiguous(memory_format=self.memory_format)
        # An autocast around the call does not reach a compiled package: it is exported inside the
        # graph instead (torch.export keeps an autocast region of forward), or fp16/bf16 would run fp32.
        model = self.model if self.autocast is None else _autocast_module(self.model, self.device, self.autocast)
        with torch.inference_mode():
            program = torch.export.export(model, (example,))
        pkg = ctx.workdir / f"aoti-b{ctx.batch}-{ctx.precision}-{ctx.device.replace(':', '')}.pt2"
        pkg.parent.mkdir(parents=True, exist_ok=True)
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(pkg))
        self.model = torch._inductor.aoti_load_package(path)
        self._precision_note += ", AOTInductor package"


def _autocast_module(model, device: str, dtype):
    """``model`` wrapped so that its forward runs under autocast to ``dtype`` (exportable)."""
    import torch

    class Autocast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype):
                return self.inner(x)

    return Autocast().eval()


def all_runners() -> dict[str, type[Runner]]:
    """Every runner class by CLI name (in report order)."""
    from fsrt.bench.runner_onnx import OpenVinoRunner, OrtRunner, OrtTensorRtRunner
    from fsrt.bench.runner_trt import TensorRtRunner

    return {"eager": EagerRunner, "compile": CompileRunner, "aoti": AotiRunner, "ort": OrtRunner,
            "ort-trt": OrtTensorRtRunner, "trt": TensorRtRunner, "openvino": OpenVinoRunner}


def select_runners(text: str, device: str) -> tuple[list[Runner], dict[str, str]]:
    """Parse ``--runtimes`` into runners that can run here plus ``{name: reason}`` for the rest.

    ``auto``: every available runtime except those with multi-minute builds on CPU (compile,
    aoti); ``all``: every available runtime; otherwise a comma list of names.
    """
    classes = all_runners()
    key = (text or "auto").strip().lower()
    if key in ("auto", "all"):
        names = list(classes)
    else:
        names = [n.strip() for n in key.split(",") if n.strip()]
        if not names:
            raise FsrtError(f"--runtimes {text!r} names no runtime; choose from auto, all, {', '.join(classes)}")
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise FsrtError(f"unknown runtime {unknown[0]!r}; choose from auto, all, {', '.join(classes)}")
    runners, skipped = [], {}
    for n in dict.fromkeys(names):
        runner = classes[n]()
        reason = runner.unavailable_reason(device)
        if reason is None and key == "auto" and runner.slow_build and not device.startswith("cuda"):
            reason = "left out of --runtimes auto on CPU (multi-minute compile per model); ask for it by name"
        if reason:
            skipped[n] = reason
        else:
            runners.append(runner)
    return runners, skipped


def module_available(name: str) -> bool:
    """True if ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
