"""The runtime side of a sweep: prepares runners for jobs, times their windows, measures memory.

A ``JobHost`` holds the prepared runners of one runtime. In a sweep it lives in a worker
process of its own (``fsrt.bench.worker``), so one runtime's thread pools never run, or spin,
while another runtime is being timed, and its memory is its own; tests drive it in-process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fsrt.bench.memory import ResidentPeak
from fsrt.bench.runners import PrepareContext, Runner
from fsrt.bench.timing import WindowConfig, time_window, warm_up, window_timer


@dataclass(frozen=True)
class HostConfig:
    """What every job of one runtime shares."""

    runtime: str
    device: str = "cpu"
    threads: int = 1
    window: WindowConfig = field(default_factory=WindowConfig)
    channels_last: bool = False
    cuda_graphs: bool = False
    workdir: str = "."


@dataclass(frozen=True)
class PrepareRequest:
    """One job: the variant's files (see ``fsrt.bench.artifacts``) at a precision and batch."""

    job: str
    spec: dict
    weights: str
    inputs: str
    onnx: dict[str, str]  # precision -> graph path (batch already fixed)
    precision: str
    batch: int
    mode: str = "infer"  # "train": the timed call is a training step (``fsrt.bench.train_step``)
    labels: str | None = None  # class labels of the batch (train mode)


@dataclass(frozen=True)
class Prepared:
    """What preparing a job produced: the timed call's outputs (for the parity check), the
    precision as the runtime applied it, and peak memory during preparation and warm-up."""

    output: np.ndarray
    note: str
    peak_mem_bytes: int | None
    mem_kind: str
    prepare_s: float


def load_module(spec_dict: dict, weights: str):
    """The fp32 module of a spec with the stored weights (built on the meta device: no init)."""
    import torch

    from fsrt.models import build_model
    from fsrt.spec import ModelSpec

    model = build_model(ModelSpec.from_dict(spec_dict), device="meta")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, assign=True)
    return model.eval()


class JobHost:
    """Prepared runners of one runtime, by job id."""

    def __init__(self, cfg: HostConfig, make_runner: Callable[[str], Runner] | None = None,
                 make_train_runner: Callable[[str], object] | None = None):
        from fsrt.device import use_device

        self.cfg = cfg
        use_device(cfg.device)  # timing, memory and L2 figures read the current CUDA device
        self.make_runner = make_runner or _registered_runner
        self.make_train_runner = make_train_runner or _train_runner
        self.jobs: dict[str, tuple[Runner, Callable[[], object], Callable[[], float]]] = {}
        self.last_parts: dict[str, dict[str, list[float]]] = {}
        self.paged_in = False  # a first training step ran outside any memory figure (``page_in``)

    def prepare(self, req: PrepareRequest) -> Prepared:
        """Prepare the runner, run the bound (timed) call once and read its outputs, warm it up."""
        from fsrt.spec import ModelSpec

        cfg = self.cfg
        t0 = time.perf_counter()
        train = req.mode == "train"
        runner = self.make_train_runner(cfg.runtime) if train else self.make_runner(cfg.runtime)
        ctx = PrepareContext(spec=ModelSpec.from_dict(req.spec), batch=req.batch, precision=req.precision,
                             device=cfg.device, threads=cfg.threads, workdir=Path(cfg.workdir),
                             onnx_path=lambda p: Path(req.onnx[p]),
                             load_model=lambda: load_module(req.spec, req.weights),
                             channels_last=cfg.channels_last, cuda_graphs=cfg.cuda_graphs)
        try:
            if train and not self.paged_in and hasattr(runner, "page_in"):
                runner.page_in(ctx)
                self.paged_in = True
            with ResidentPeak(cfg.device) as mem:
                runner.prepare(ctx)
                x = np.load(req.inputs)
                fn = runner.bind(x, np.load(req.labels)) if train else runner.bind(x)
                fn()
                output = runner.output()
                warm_up(fn, cfg.window.warmup_s, cfg.window.min_warmup, cfg.device)
        except BaseException:
            runner.close()
            raise
        self.jobs[req.job] = (runner, fn, window_timer(fn, cfg.window, cfg.device))
        return Prepared(output, runner.precision_note(), mem.peak_bytes, mem.kind, time.perf_counter() - t0)

    def window(self, job: str) -> list[float]:
        """Time one window of a prepared job (ms per call)."""
        if job not in self.jobs:
            raise RuntimeError("this job is not prepared in this worker (its earlier worker process ended)")
        runner, fn, time_one = self.jobs[job]
        clear = getattr(runner, "clear_parts", None)
        if clear is None:
            return time_window(fn, self.cfg.window, self.cfg.device, time_one)
        clear()
        times = time_window(fn, self.cfg.window, self.cfg.device, time_one)
        self.last_parts[job] = runner.parts(len(times))
        return times

    def parts(self, job: str) -> dict[str, list[float]]:
        """Per-part ms of each timed call of the job's last window (a training step's forward and
        backward), aligned with the window's times; empty for runners that time one whole call."""
        return self.last_parts.pop(job, {})

    def release(self, job: str) -> None:
        """Free a job's runner."""
        runner, _, _ = self.jobs.pop(job, (None, None, None))
        self.last_parts.pop(job, None)
        if runner is not None:
            runner.close()

    def close(self) -> None:
        """Free every runner."""
        for job in list(self.jobs):
            self.release(job)


def _registered_runner(name: str) -> Runner:
    from fsrt.bench.runners import all_runners

    return all_runners()[name]()


def _train_runner(name: str):
    from fsrt.bench.train_step import make_train_runner

    return make_train_runner(name)
