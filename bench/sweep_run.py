"""The benchmark sweep: models x strategies x s x batch x precision x runtime, measured,
checked and stored point by point so an interrupted sweep resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fsrt.bench.ceilings import Ceilings, measure_ceilings, roofline_floors
from fsrt.bench.memory import PeakMemory
from fsrt.bench.runners import PrepareContext, Runner
from fsrt.bench.store import Store
from fsrt.bench.timing import TimingConfig, measure
from fsrt.complexity import complexity
from fsrt.errors import first_line
from fsrt.scaling import Strategy, scale_spec
from fsrt.spec import ModelSpec

DONE_STATUSES = ("ok", "unstable", "parity_failed")


@dataclass(frozen=True)
class BenchPlan:
    """What to measure. ``sources`` are zoo names, spec files or checkpoints."""

    sources: tuple[str, ...]
    strategies: tuple[Strategy, ...]
    s_values: tuple[float, ...]
    batches: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    threads: int = 2
    resolution: int | None = None
    channels_last: bool = False
    cuda_graphs: bool = False
    timing: TimingConfig = field(default_factory=TimingConfig)
    seed: int = 0

    def to_config(self, runtimes: list[str]) -> dict:
        """The run's identity: same config resumes the same run."""
        return {"sources": list(self.sources), "strategies": [s.name for s in self.strategies],
                "s": list(self.s_values), "batches": list(self.batches), "precisions": list(self.precisions),
                "device": self.device, "threads": self.threads, "resolution": self.resolution,
                "channels_last": self.channels_last, "cuda_graphs": self.cuda_graphs, "runtimes": runtimes,
                "timing": asdict(self.timing), "seed": self.seed}


@dataclass(frozen=True)
class Variant:
    """One scaled model of the sweep."""

    name: str
    base: str
    strategy: Strategy
    s: float
    flops_mult: float
    spec: ModelSpec
    source: str = ""
    trained_weights: bool = False  # a checkpoint's own (unscaled) model: run it with its weights

    @property
    def spec_hash(self) -> str:
        d = self.spec.to_dict()
        d.pop("name", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def plan_variants(plan: BenchPlan) -> list[Variant]:
    """Every (base model, strategy, s) of the plan as a scaled spec."""
    from fsrt.source import get_spec, is_checkpoint_path

    variants = []
    for source in plan.sources:
        is_checkpoint = is_checkpoint_path(source)
        base = get_spec(source)
        if plan.resolution:
            base = base.replace(resolution=plan.resolution)
        base_name = base.name or Path(str(source)).stem
        for strategy in plan.strategies:
            for s in plan.s_values:
                scaled = scale_spec(base, strategy, s)
                name = base_name if s == 1 else scaled.spec.name or f"{base_name}@{strategy.name}:s={s:g}"
                same_weights = is_checkpoint and _weight_shapes(scaled.spec) == _weight_shapes(base)
                variants.append(Variant(name, base_name, strategy, s, scaled.flops_multiplier, scaled.spec,
                                        str(source), same_weights))
    return variants


def _weight_shapes(spec: ModelSpec) -> tuple:
    """The parts of a spec that decide its parameter shapes (resolution does not)."""
    return spec.stem, spec.stages, spec.head.width, spec.num_classes


def calibrate_batchnorm(model, resolution: int, seed: int, batches: int = 2, batch_size: int = 8) -> None:
    """Set BN running statistics from random inputs (cumulative average), then switch to eval.

    A freshly initialized network has unit BN statistics, so activations shrink or grow
    layer after layer (EfficientNet's logits end near 1e-14) and half precision underflows;
    calibrated statistics give trained-like activation scales and meaningful parity checks.
    """
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, 3, resolution, resolution, generator=gen))
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


def measurement_key(v: Variant, runtime: str, precision: str, batch: int, plan: BenchPlan) -> str:
    """Hash of everything that determines a measurement (not the strategy label)."""
    ident = {"spec": v.spec_hash, "runtime": runtime, "precision": precision, "batch": batch, "device": plan.device,
             "threads": plan.threads, "channels_last": plan.channels_last, "cuda_graphs": plan.cuda_graphs,
             "l2": plan.timing.l2}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def point_key(v: Variant, mkey: str) -> str:
    """A stored point: the measurement plus the strategy and s it is reported under."""
    return hashlib.sha1(f"{mkey}|{v.strategy.name}|{v.s!r}".encode()).hexdigest()[:20]


class _Model:
    """The variant's module and ONNX exports, built on first use and cached."""

    def __init__(self, v: Variant, plan: BenchPlan, workdir: Path):
        self.v, self.plan, self.workdir = v, plan, workdir
        self._model = None
        self._onnx: dict[tuple[str, int], Path] = {}
        self._refs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def model(self):
        if self._model is None:
            import torch

            from fsrt.models import build_model

            if self.v.trained_weights:
                from fsrt.exporters.model_source import load_model

                self._model = load_model(self.v.source)[0].eval()
            else:
                torch.manual_seed(self.plan.seed)
                self._model = build_model(self.v.spec)
                calibrate_batchnorm(self._model, self.v.spec.resolution, self.plan.seed)
        return self._model

    def inputs(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeded input batch and its float64 reference logits."""
        if batch not in self._refs:
            import copy

            import torch

            r = self.v.spec.resolution
            x = np.random.default_rng(self.plan.seed).standard_normal((batch, 3, r, r)).astype(np.float32)
            ref_model = copy.deepcopy(self.model).double().eval()
            with torch.no_grad():
                ref = ref_model(torch.from_numpy(x).double()).numpy()
            self._refs[batch] = (x, ref)
        return self._refs[batch]

    def onnx_path(self, precision: str, batch: int) -> Path:
        key = (precision, batch)
        if key not in self._onnx:
            from fsrt.exporters.onnx_export import export_onnx

            path = self.workdir / "onnx" / f"{self.v.spec_hash}-b{batch}-{precision}.onnx"
            if not path.exists():
                export_onnx(self.model, path, batch=batch, precision=precision, parity=False, force=True)
            self._onnx[key] = path
        return self._onnx[key]


def relative_error(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs error, max abs error / max |ref|)."""
    if out.shape != ref.shape:
        raise RuntimeError(f"output shape {out.shape} differs from eager's {ref.shape}")
    err = float(np.max(np.abs(out - ref)))
    scale = float(np.max(np.abs(ref)))
    return err, err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {first_line(e)[:300]}" if str(e).strip() else type(e).__name__


def measure_point(runner: Runner, v: Variant, m: _Model, precision: str, batch: int, plan: BenchPlan,
                  workdir: Path, ceilings: Ceilings | None) -> dict:
    """Prepare, parity-check and time one runner on variant ``v`` (its module from ``m``)."""
    from fsrt.precision import get_precision

    cx = complexity(v.spec)
    rec = {"model": v.name, "base": v.base, "family": v.spec.family, "strategy": v.strategy.name,
           "alpha": v.strategy.alpha, "s": v.s, "flops_mult": v.flops_mult, "runtime": runner.name,
           "precision": precision, "batch": batch, "resolution": v.spec.resolution, "device": plan.device,
           "threads": plan.threads, **cx.to_dict(), "spec_json": v.spec.to_json()}
    if ceilings is not None:
        floors = roofline_floors(cx.flops, cx.params, cx.acts, batch, 3 * v.spec.resolution**2, v.spec.num_classes,
                                 precision, ceilings)
        rec["floor_compulsory_ms"], rec["floor_layer_ms"] = floors
    x, ref = m.inputs(batch)
    ctx = PrepareContext(model=m.model, spec=v.spec, batch=batch, precision=precision, device=plan.device,
                         threads=plan.threads, workdir=workdir, onnx_path=lambda p: m.onnx_path(p, batch),
                         channels_last=plan.channels_last, cuda_graphs=plan.cuda_graphs)
    try:
        with PeakMemory(plan.device) as mem:
            runner.prepare(ctx)
            err_abs, err_rel = relative_error(runner.infer(x), ref)
            rec["parity_max_abs"], rec["parity_max_rel"] = err_abs, err_rel
            bound = get_precision(precision).bound
            if not err_rel <= bound:
                rec.update(status="parity_failed", reason=f"relative error {err_rel:.2e} > {bound:.0e} bound "
                                                           f"({runner.precision_note()})")
                return rec
            timing = measure(runner.call(x), plan.timing, plan.device)
        rec.update(timing.stats.to_dict())
        rec.update(status="unstable" if timing.unstable else "ok", unstable=int(timing.unstable), l2=timing.l2,
                   peak_mem_bytes=mem.peak_bytes, reason=runner.precision_note())
    except Exception as e:  # a runtime that cannot run this model is a recorded result, not a crash
        rec.update(status="error", reason=_first_line(e))
    finally:
        runner.close()
    return rec


def get_ceilings(store: Store, machine_id: str, device: str, precision: str, threads: int) -> Ceilings:
    """Stored ceilings for this machine, measured once when missing."""
    row = store.ceiling(machine_id, device, precision, threads)
    if row is None:
        c = measure_ceilings(device, precision)
        store.put_ceiling(machine_id, device, precision, threads, c.peak_flops, c.copy_bytes_per_s)
        return c
    return Ceilings(row["peak_flops"], row["copy_bytes_per_s"])


def run_sweep(plan: BenchPlan, variants: list[Variant], runners: list[Runner], store: Store, run_id: int,
              machine_id: str, workdir: Path, on_point: Callable[[str, dict | None], None] | None = None) -> list[dict]:
    """Measure every missing point of ``variants`` (from ``plan_variants(plan)``); reuse stored
    ones. Returns the run's records.

    ``on_point(description, record)`` is called before (record None) and after each point.
    Points are committed one by one, so an interruption loses at most the point in flight.
    """
    import torch

    torch.set_num_threads(plan.threads)
    measured: dict[str, dict] = {}
    records = []
    for v in variants:
        m = _Model(v, plan, workdir)  # builds the module only if a point needs measuring
        for batch in plan.batches:
            for precision in plan.precisions:
                for runner in runners:
                    mkey = measurement_key(v, runner.name, precision, batch, plan)
                    key = point_key(v, mkey)
                    label = f"{v.name} {runner.name} {precision} b{batch}"
                    if on_point:
                        on_point(label, None)
                    old = store.find_point(machine_id, key)
                    if old and old["status"] in DONE_STATUSES:
                        store.link_point(run_id, old["id"])
                        records.append(old)
                    else:
                        if mkey in measured:  # same model measured under another strategy label (s=1)
                            rec = {**measured[mkey], "model": v.name, "strategy": v.strategy.name,
                                   "alpha": v.strategy.alpha, "s": v.s, "flops_mult": v.flops_mult, "created": None}
                        else:
                            ceil = get_ceilings(store, machine_id, plan.device, precision, plan.threads)
                            rec = measure_point(runner, v, m, precision, batch, plan, workdir, ceil)
                            measured[mkey] = rec
                        store.put_point(run_id, machine_id, key, rec)
                        records.append(rec)
                    if on_point:
                        on_point(label, records[-1])
    return records
