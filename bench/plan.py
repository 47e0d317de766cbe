"""What a sweep measures: the plan, its scaled model variants, and the keys that identify a point.

A *measurement* is one physical thing timed (a model's weights and structure on a runtime at a
precision, batch, thread count and with given timing settings); its key (``mkey``) hashes all of
that, so changing anything that changes what is measured measures again, while repeating the
same command reuses stored points (resume). A *point* is a measurement reported under a strategy
and s: the unscaled base model is one measurement listed under every strategy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fsrt.accuracy import RULE as CHECK_RULE
from fsrt.bench.rounds import RoundConfig
from fsrt.bench.timing import WindowConfig
from fsrt.calibration import CALIBRATION
from fsrt.complexity import Complexity, complexity
from fsrt.scaling import Strategy, scale_spec
from fsrt.spec import ModelSpec

# Bumped when the way a figure is measured changes, so old points are not reused as if comparable.
# 2: ONNX Runtime's and OpenVINO's workers no longer load torch (the timed process changed).
METHOD = "interleaved-rounds/2"


@dataclass(frozen=True)
class BenchPlan:
    """What to measure and how. ``sources`` are zoo names, spec files or checkpoints."""

    sources: tuple[str, ...]
    strategies: tuple[Strategy, ...]
    s_values: tuple[float, ...]
    batches: tuple[int, ...] = (1,)
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    threads: int = 1
    resolution: int | None = None
    channels_last: bool = False
    cuda_graphs: bool = False
    window: WindowConfig = field(default_factory=WindowConfig)
    rounds: RoundConfig = field(default_factory=RoundConfig)
    seed: int = 0
    half_at_s: float | None = None  # measure fp16/bf16 only at this s (None: at every s)
    skip: tuple[tuple[str, str], ...] = ()  # (runtime, precision) pairs not measured
    modes: tuple[str, ...] = ("infer",)  # what a timed call is: "infer" (forward) and/or "train" (a step)
    train_batches: tuple[int, ...] | None = None  # batches of train points (None: ``batches``)
    train_precisions: tuple[str, ...] | None = None  # precisions of train points (None: ``precisions``)

    def measures(self, v: Variant, runtime: str, precision: str, mode: str = "infer") -> bool:
        """Whether the plan measures ``v`` on ``runtime`` at ``precision`` (``--precision auto``
        leaves out non-native pairs and measures half precisions at one s only; train steps at the
        trainer's own precision are measured at every s)."""
        if mode == "train" and self.train_precisions is not None:
            return True
        if (runtime, precision) in self.skip:
            return False
        return precision == "fp32" or self.half_at_s is None or v.s == self.half_at_s

    def batches_for(self, mode: str) -> tuple[int, ...]:
        """The batch sizes measured in ``mode``."""
        return (self.train_batches or self.batches) if mode == "train" else self.batches

    def precisions_for(self, mode: str) -> tuple[str, ...]:
        """The precisions measured in ``mode``."""
        return (self.train_precisions or self.precisions) if mode == "train" else self.precisions

    def to_config(self, runtimes: list[str]) -> dict:
        """The run's identity: the same config reopens (resumes) the same run."""
        modes = {} if self.modes == ("infer",) else {
            "modes": list(self.modes), "train_batches": list(self.batches_for("train")),
            "train_precisions": list(self.precisions_for("train"))}
        return {**modes, "sources": list(self.sources), "strategies": [s.name for s in self.strategies],
                "s": list(self.s_values), "batches": list(self.batches), "precisions": list(self.precisions),
                "device": self.device, "threads": self.threads, "resolution": self.resolution,
                "channels_last": self.channels_last, "cuda_graphs": self.cuda_graphs, "runtimes": runtimes,
                "window": self.window.identity(), "rounds": self.rounds.identity(), "seed": self.seed,
                "method": METHOD, "half_at_s": self.half_at_s, "skip": [list(k) for k in self.skip]}


@dataclass(frozen=True)
class Variant:
    """One scaled model of the sweep, with its exact complexity."""

    name: str
    base: str
    strategy: Strategy
    s: float
    flops_mult: float
    spec: ModelSpec
    cx: Complexity
    source: str = ""
    trained_weights: bool = False  # a checkpoint's own (unscaled) model: run it with its weights

    @property
    def spec_hash(self) -> str:
        """Hash of the structure (the name does not count)."""
        d = self.spec.to_dict()
        d.pop("name", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def weights_tag(self, seed: int) -> str:
        """Where the weights come from: the checkpoint file, or a seeded initialization."""
        if self.trained_weights:
            return "checkpoint:" + hashlib.sha1(str(Path(self.source).resolve()).encode()).hexdigest()[:12]
        return f"seed:{seed}:{CALIBRATION}"

    @property
    def artifact_id(self) -> str:
        """File-name stem of this variant's artifacts (module weights, inputs, ONNX graphs)."""
        return self.spec_hash + ("-ckpt" if self.trained_weights else "")


def plan_variants(plan: BenchPlan) -> list[Variant]:
    """Every (base model, strategy, s) of the plan as a scaled spec with its complexity."""
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
                                        complexity(scaled.spec), str(source), same_weights))
    return variants


def _weight_shapes(spec: ModelSpec) -> tuple:
    """The parts of a spec that decide its parameter shapes (resolution does not)."""
    return spec.stem, spec.stages, spec.head.width, spec.num_classes


@dataclass(frozen=True)
class Job:
    """One measurement of a sweep: a variant on a runtime at a precision and batch."""

    variant: Variant
    runtime: str
    precision: str
    batch: int
    mkey: str
    mode: str = "infer"

    @property
    def label(self) -> str:
        """How progress lines name it."""
        mode = "" if self.mode == "infer" else f" {self.mode}"
        return f"{self.variant.name} {self.runtime}{mode} {self.precision} b{self.batch}"


def measurement_key(v: Variant, runtime: str, precision: str, batch: int, plan: BenchPlan, mode: str = "infer",
                    step: dict | None = None) -> str:
    """Hash of everything that determines a measurement (not the strategy label). ``step`` is what
    defines a training step (train mode: ``fsrt.bench.train_step.step_identity``)."""
    ident = {"spec": v.spec_hash, "weights": v.weights_tag(plan.seed), "runtime": runtime, "mode": mode,
             **({"step": step} if step else {}), "precision": precision,
             "batch": batch, "device": plan.device, "threads": plan.threads, "channels_last": plan.channels_last,
             "cuda_graphs": plan.cuda_graphs, "window": plan.window.identity(), "rounds": plan.rounds.identity(),
             "method": METHOD, "check": CHECK_RULE}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def point_key(v: Variant, mkey: str) -> str:
    """A stored point: the measurement plus the strategy and s it is reported under."""
    return hashlib.sha1(f"{mkey}|{v.strategy.name}|{v.s!r}".encode()).hexdigest()[:20]
