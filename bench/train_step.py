"""Training-step latency: one step of fsrt's trainer as the timed call of a ``train`` point.

A train point times what one iteration of ``fsrt train`` costs the model: forward under the
trainer's autocast policy, the trainer's loss (label smoothing), backward through its gradient
scaler, and an SGD-with-momentum step over the trainer's own parameter groups (no weight decay
on BatchNorm parameters and biases). Everything comes from ``fsrt.train`` with the
``fast-scaling`` recipe; what the trainer does around the step is left out on purpose, because
it is not the model's cost: loading and augmenting data (the batch is fixed and already on the
device), mixup, the per-iteration learning-rate update and the EMA update.

Precision follows the trainer's AMP policy: ``fp32`` is AMP off; ``bf16``/``fp16`` are autocast
in that dtype, with a gradient scaler for fp16 on GPU (as ``amp_setup`` decides). The trainer's
default (``amp: auto``) is fp32 on CPU and half precision on GPU (``default_train_precision``).

Each timed call also records when its forward (and loss) ended, so a point reports the step,
the forward and the backward plus optimizer step from the same calls (``parts``).

Parity: the first call of the bound step is checked against the same step computed in float64
from the same weights and batch: loss, gradient norm and the norm of the weight update must each
match within the precision's bound (relative; ``train_bound``). Stochastic layers (dropout,
stochastic depth) are off for that one call only (their masks come from different generators on
different devices and dtypes); the timed calls run them.

Some steps are ill-conditioned: BatchNorm over a handful of values (a small batch at a low
resolution, where the last stages are 1x1) divides by a standard deviation that fp32 rounding
alone changes by percent. So the float64 step is also computed from weights and inputs perturbed
at fp32's unit roundoff (twice, seeded); the larger relative change is the step's *sensitivity*,
and the bound is the precision's fixed bound or ``SENSITIVITY_FACTOR`` times the sensitivity,
whichever is larger. (On RegNetX-200MF at 32 px and batch 4 single perturbations moved the
gradient norm by 1.4e-3 to 1.3e-2 and the fp32 step differs by 1.2e-2; RegNetY-400MF at 64 px
and batch 8: 4e-7 to 1.5e-5 against 1.7e-5.) A realistic step keeps the fixed bound: at 128 px
and batch 32 the zoo's RegNetY-400MF and its scaled variants differ by 1.2e-4 to 1.5e-4.

Runtimes that can train: eager PyTorch and ``torch.compile`` (Inductor, without freezing, which
is inference-only). The others run inference only and are listed as unavailable in train mode.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fsrt.errors import FsrtError

RECIPE = "fast-scaling"
MODES = ("infer", "train")
# Defaults of train mode where the user gives no --batch / --resolution on CPU: a step of a batch
# of 32 at 224 px takes seconds per model on a small CPU; at 128 px a sweep fits in minutes.
TRAIN_BATCH = 32
TRAIN_CPU_RESOLUTION = 128
# Bumped when what one timed training step contains changes (part of a train point's identity).
STEP_METHOD = "train-step/1"

# Parity bounds of a training step against float64, relative, per quantity (loss, gradient norm,
# update norm). fp32: BatchNorm's batch-statistics backward sums over every pixel of the batch;
# measured errors on RegNetY-400MF reach 1.4e-4 (128 px, batch 32), so 2e-3 leaves headroom while
# a wrong step (a missing term, a skipped update, a wrong learning rate or smoothing) is off by
# percent or more. Half precision grows through forward and backward: bf16 autocast measured 0.9%
# (128 px, batch 32) to 7.6% (64 px, batch 8) on the gradient norm, so 1.5e-1; fp16 has 8x finer
# rounding (2^-11 against 2^-8): 5e-2.
TRAIN_BOUNDS = {"fp32": 2e-3, "fp16": 5e-2, "bf16": 1.5e-1}
SENSITIVITY_FACTOR = 20.0
PERTURBATIONS = 2
QUANTITIES = ("loss", "gradient norm", "update norm")

PART_NAMES = ("forward", "backward")  # forward + loss; backward + optimizer step


def train_recipe(precision: str, batch: int):
    """The trainer's recipe as a train point uses it: ``fast-scaling`` at ``batch`` with AMP set by
    ``precision`` (fp32: off; bf16/fp16: on in that dtype)."""
    from fsrt.train.recipe import load_recipe

    amp = {"amp": "off"} if precision == "fp32" else {"amp": "on", "amp_dtype": precision}
    return load_recipe(RECIPE, {"batch_size": batch, **amp})


def step_identity() -> dict:
    """What defines the timed step (stored in a train point's measurement key)."""
    r = train_recipe("fp32", 1)
    return {"method": STEP_METHOD, "recipe": RECIPE, "momentum": r.momentum, "nesterov": r.nesterov,
            "weight_decay": r.weight_decay, "by_family": r.weight_decay_by_family,
            "no_decay_bn_bias": r.no_decay_bn_bias, "label_smoothing": r.label_smoothing, "lr": r.lr,
            "lr_ref_batch": r.lr_ref_batch}


def default_train_precision(device: str) -> str:
    """The trainer's own AMP choice (``amp: auto``) on ``device``: fp32 on CPU, bf16 or fp16 on GPU."""
    import torch

    from fsrt.train.amp import amp_setup
    from fsrt.train.recipe import load_recipe

    dtype, _ = amp_setup(load_recipe(RECIPE), torch.device(device))
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def parse_modes(text: str) -> tuple[str, ...]:
    """``--mode``: infer, train or both (as the modes measured, in report order)."""
    key = (text or "infer").strip().lower()
    if key == "both":
        return MODES
    if key in MODES:
        return (key,)
    raise FsrtError(f"--mode must be infer, train or both, got {text!r}")


def train_unavailable_reason(runtime: str) -> str | None:
    """None if ``runtime`` can time training steps, else why not (a one-line reason)."""
    if runtime in TRAIN_RUNNERS:
        return None
    return (f"{runtime} runs inference only; training steps are timed on "
            f"{' and '.join(TRAIN_RUNNERS)} (--runtimes {','.join(TRAIN_RUNNERS)})")


# -- the batch and the float64 reference step --------------------------------------------------------
def make_labels(seed: int, batch: int, num_classes: int) -> np.ndarray:
    """Seeded class labels for a batch (int64)."""
    return np.random.default_rng([seed, batch, 7]).integers(0, num_classes, batch).astype(np.int64)


def step_summary(loss, params, before) -> np.ndarray:
    """[loss, gradient norm, update norm, 0] of a step, in float64 (missing gradients count as 0)."""
    import torch

    with torch.no_grad():
        g2 = sum(float(p.grad.double().pow(2).sum()) for p in params if p.grad is not None)
        u2 = sum(float((p.detach().double() - b.double()).pow(2).sum()) for p, b in zip(params, before))
    return np.array([float(loss), math.sqrt(g2), math.sqrt(u2), 0.0])


def reference_step(model, x: np.ndarray, y: np.ndarray, family: str, perturb: float = 0.0,
                   seed: int = 0, device: str = "cpu") -> np.ndarray:
    """The training step in float64 from ``model``'s weights (left untouched): its ``step_summary``.

    The same recipe, parameter groups and SGD as the timed step; the loss is PyTorch's own
    label-smoothed cross-entropy in float64. Stochastic layers are off (see the module docstring).
    ``perturb``: multiply every weight and input value by ``1 + perturb * U(-1, 1)`` first (seeded,
    drawn on the CPU so every ``device`` perturbs alike). ``device``: where the float64 step runs.
    """
    import torch
    import torch.nn.functional as F

    from fsrt.train.schedule import make_optimizer

    recipe = train_recipe("fp32", len(y))
    m = copy.deepcopy(model).double().train().to(device)
    set_stochastic(m, False)
    xt = torch.from_numpy(x).double().to(device)
    if perturb:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for t in [*m.parameters(), xt]:
                t.mul_((1 + perturb * (2 * torch.rand(t.shape, generator=gen, dtype=torch.float64) - 1)).to(device))
    opt = make_optimizer(m, recipe, family)
    params = [p for p in m.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    loss = F.cross_entropy(m(xt), torch.from_numpy(y).to(device), label_smoothing=recipe.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return step_summary(loss.detach(), params, before)


def reference(model, x: np.ndarray, y: np.ndarray, family: str, seed: int = 0, device: str = "cpu") -> np.ndarray:
    """Rows: the float64 ``reference_step`` and its sensitivity (the larger relative change of each
    quantity over ``PERTURBATIONS`` perturbations of weights and inputs at fp32's unit roundoff),
    computed on ``device``."""
    ref = reference_step(model, x, y, family, device=device)
    scale = np.where(np.abs(ref) > 0, np.abs(ref), 1.0)
    moved = [reference_step(model, x, y, family, perturb=2.0**-24, seed=seed * 1000 + i, device=device)
             for i in range(PERTURBATIONS)]
    return np.stack([ref, np.max([np.abs(m - ref) / scale for m in moved], axis=0)])


def set_stochastic(model, on: bool) -> None:
    """Switch dropout and stochastic-depth modules on (train) or off (eval), leaving BatchNorm alone."""
    import torch

    from fsrt.models.blocks import DropPath

    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, DropPath)):
            m.train(on)


def step_error(out: np.ndarray, ref: np.ndarray) -> tuple[float, float, str]:
    """(max abs error, max relative error, which quantity) of a step summary against the reference
    (a ``reference`` array or its first row).

    Relative per quantity (loss, gradient norm, update norm). When the step reports that its gradient
    scaler skipped it (fp16 overflow at the scaler's initial scale) only the loss is compared: the
    gradients then hold the inf/nan that made it skip, and there is no update.
    """
    ref = ref[0] if ref.ndim == 2 else ref
    if out.shape != ref.shape:
        raise RuntimeError(f"training-step summary has shape {out.shape}, expected {ref.shape}")
    n = 1 if out[3] else 3
    worst = (0.0, 0.0, QUANTITIES[0])
    for i in range(n):
        err = abs(float(out[i]) - float(ref[i])) if math.isfinite(out[i]) else math.inf
        scale = abs(float(ref[i]))
        rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
        if rel > worst[1] or (rel == worst[1] == 0 and err > worst[0]):
            worst = (err, rel, QUANTITIES[i])
    return worst


def train_bound(precision: str, ref: np.ndarray | None = None) -> float:
    """The parity bound of a training step at ``precision``: the fixed bound, or for an ill-conditioned
    step (``ref`` from ``reference``) ``SENSITIVITY_FACTOR`` times its sensitivity when larger."""
    sensitivity = float(np.max(ref[1][:3])) if ref is not None and ref.ndim == 2 else 0.0
    return max(TRAIN_BOUNDS[precision], SENSITIVITY_FACTOR * sensitivity)


def train_files(art, batches: list[int]) -> tuple[dict[int, Path], dict[int, Path]]:
    """Labels and float64 reference step summaries of a variant per batch (``.npy``, written once,
    atomically), from the variant's stored weights and inputs."""
    from fsrt.bench.artifacts import _npy
    from fsrt.bench.host import load_module
    from fsrt.io import atomic_write_bytes

    labels, refs = {}, {}
    model = None
    for b in batches:
        y_path, ref_path = art.file(f"-b{b}-y.npy"), art.file(f"-b{b}-train-ref.npy")
        if not (y_path.exists() and ref_path.exists()):
            x_path, _ = art.inputs(b)
            y = make_labels(art.seed, b, art.v.spec.num_classes)
            model = model or load_module(art.v.spec.to_dict(), str(art.weights()))
            ref = reference(model, np.load(x_path), y, art.v.spec.family, art.seed, art.device)
            atomic_write_bytes(y_path, _npy(y))
            atomic_write_bytes(ref_path, _npy(ref))
        labels[b], refs[b] = y_path, ref_path
    return labels, refs


# -- runners -----------------------------------------------------------------------------------------
class TrainStepRunner:
    """Eager PyTorch training step. Lifecycle as ``fsrt.bench.runners.Runner``: ``prepare(ctx)``,
    ``fn = bind(x, y)``, ``fn()`` (one training step), ``output()`` (the first call's step summary),
    plus ``clear_parts()`` / ``parts(n)`` (forward and backward times of the last ``n`` calls)."""

    name = "eager"

    def prepare(self, ctx) -> None:
        """The trainer's model (train mode), optimizer, autocast dtype and gradient scaler."""
        import torch

        from fsrt.bench.runners import configure_cuda
        from fsrt.train.amp import amp_setup
        from fsrt.train.schedule import make_optimizer

        self.device = torch.device(ctx.device)
        configure_cuda(ctx.device)
        if ctx.precision == "fp16" and self.device.type == "cpu":
            raise FsrtError("the trainer's AMP runs bf16 on CPU (fp16 autocast is GPU-only in fsrt train); "
                            "use --precision bf16 or fp32 for CPU training steps")
        self.recipe = train_recipe(ctx.precision, ctx.batch)
        model = copy.deepcopy(ctx.model).to(self.device).train()
        self.memory_format = torch.channels_last if ctx.channels_last else torch.contiguous_format
        if ctx.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(model, self.recipe, ctx.spec.family)
        self.dtype, self.scaler = amp_setup(self.recipe, self.device)
        self.net = self._wrap(model)
        amp = "fp32" if self.dtype is None else f"autocast {str(self.dtype).replace('torch.', '')}"
        scaler = " + GradScaler" if self.scaler.is_enabled() else ""
        self._precision_note = (f"train step {amp}{scaler}, SGD momentum {self.recipe.momentum} "
                                f"({RECIPE} param groups), label smoothing {self.recipe.label_smoothing}")
        if ctx.channels_last:
            self._precision_note += ", channels_last"
        if ctx.cuda_graphs:
            self._precision_note += ", no CUDA graph (a training step is not captured)"
        self._marks: list[tuple] = []

    def _wrap(self, model):
        """The module the step calls (compiled in subclasses)."""
        return model

    def page_in(self, ctx) -> None:
        """Run one step of the same architecture at 32 px and batch 2, outside the memory figure: the
        first backward of a process loads code and one-time state (hundreds of MB of resident pages)
        that would otherwise be charged to whichever train job came first."""
        import dataclasses

        from fsrt.models import build_model

        spec = ctx.spec.replace(resolution=32)
        small = dataclasses.replace(ctx, batch=2, spec=spec, load_model=lambda: build_model(spec))
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
        step = TrainStepRunner()  # eager even for compile: its code is what a first backward pages in
        step.prepare(small)
        fn = step.bind(x, make_labels(0, 2, ctx.spec.num_classes))
        fn()
        step.output()
        step.close()

    def _mark(self) -> Callable[[], object]:
        if self.device.type == "cuda":
            import torch

            def mark():
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                return ev

            return mark
        return time.perf_counter_ns

    def bind(self, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
        """One training step on the bound batch; the first call runs without stochastic layers and
        its summary is what ``output`` returns (the parity check)."""
        import torch

        from fsrt.train.amp import autocast
        from fsrt.train.loss import mixed_loss

        xt = torch.from_numpy(x).to(self.device).contiguous(memory_format=self.memory_format)
        yt = torch.from_numpy(y).to(self.device)
        net, opt, scaler, dtype, dev = self.net, self.optimizer, self.scaler, self.dtype, self.device
        smoothing, marks, mark = self.recipe.label_smoothing, self._marks, self._mark()

        def step():
            t0 = mark()
            with autocast(dev, dtype):
                logits = net(xt)
            loss = mixed_loss(logits, yt, smoothing)
            t1 = mark()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            marks.append((t0, t1, mark()))
            self._loss = loss.detach()

        self._before = [p.detach().clone() for p in self.params]
        self._scale0 = scaler.get_scale() if scaler.is_enabled() else None
        set_stochastic(self.model, False)
        return step

    def output(self) -> np.ndarray:
        """[loss, gradient norm, update norm, skipped] of the first call (float64); then turns
        stochastic layers back on for the timed calls."""
        self._sync()
        if self._before is None:
            raise RuntimeError("output() reads the first training step only")
        out = step_summary(self._loss, self.params, self._before)
        if self._scale0 is not None and self.scaler.get_scale() < self._scale0:
            out[1:] = math.nan, math.nan, 1.0  # the scaler found inf/nan (left in the gradients) and skipped
        self._before = None
        set_stochastic(self.model, True)
        return out

    def clear_parts(self) -> None:
        """Forget recorded call times (a timing window starts)."""
        self._marks.clear()

    def parts(self, n: int) -> dict[str, list[float]]:
        """Forward and backward(+step) ms of the last ``n`` calls; raises if the last loss is not
        finite (training diverged while being timed: its times would not be a training step's)."""
        self._sync()
        if not bool(self._loss.isfinite()):
            raise RuntimeError("the training step's loss became non-finite while it was timed")
        marks = self._marks[-n:] if n else []
        if self.device.type == "cuda":
            fwd = [a.elapsed_time(b) for a, b, _ in marks]
            bwd = [b.elapsed_time(c) for _, b, c in marks]
        else:
            fwd = [(b - a) / 1e6 for a, b, _ in marks]
            bwd = [(c - b) / 1e6 for _, b, c in marks]
        return {"forward": fwd, "backward": bwd}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def precision_note(self) -> str:
        """What the step applied (AMP, optimizer, loss)."""
        return self._precision_note

    def close(self) -> None:
        """Release the model and optimizer."""
        self.model = self.net = self.optimizer = self.params = self._before = None


class CompileTrainStepRunner(TrainStepRunner):
    """``torch.compile`` (Inductor) of the training module: forward and its backward compiled by
    AOTAutograd; loss, scaler and optimizer run as in the trainer."""

    name = "compile"

    def _wrap(self, model):
        import torch

        return torch.compile(model)

    def prepare(self, ctx) -> None:
        super().prepare(ctx)
        self._precision_note += ", inductor (no freezing)"


TRAIN_RUNNERS: dict[str, type[TrainStepRunner]] = {"eager": TrainStepRunner, "compile": CompileTrainStepRunner}


def make_train_runner(name: str) -> TrainStepRunner:
    """The training-step runner of a runtime (``train_unavailable_reason`` says which exist)."""
    reason = train_unavailable_reason(name)
    if reason:
        raise FsrtError(reason)
    return TRAIN_RUNNERS[name]()
