"""How far a runtime's outputs are from the model's, and how far they should be at a precision.

One module for every output comparison fsrt makes: ``fsrt export`` checks its ONNX graph with
it and ``fsrt bench`` checks the outputs of every timed call with it (docs/architecture.md,
"Export and parity" and "Precisions").

**The measure.** ``rel_l2 = ||y - ref|| / ||ref||`` over all outputs, against the model run in
float64. ``max_abs`` and ``max_rel = max|y - ref| / max|ref|`` are reported beside it.

**The rule.** fp32 must stay below ``FP32_BOUND`` (1e-4: far above fp32 rounding, ~1e-6 on the
zoo, far below any real bug). A half precision has no fixed bound: honest fp16/bf16 rounding
through a deep network gives anything from 1e-3 to 3e-1 depending on the network, so its
*expected* error is derived from the model itself. ``emulate`` runs the model in float64 with
the precision's rounding applied to every conv and linear layer's input, weights and output;
its error is the expected error ``e``. A runtime passes when its error lies in
``[e / LOWER_FACTOR, UPPER_FACTOR * e]``:

- above: more error than the precision's rounding explains, a broken kernel or graph;
- below: far less error than the precision would cause, so the runtime did not compute in that
  precision (it ran fp32, or fp16 for bf16) and its timing must not carry that label.

The factors come from measurements on one model of each zoo family at 64 px
(``dev/precision_check.py``): honest runtimes (eager autocast, OpenVINO, ONNX Runtime) landed
at 0.52x to 2.04x the emulated error; a runtime computing bf16 when asked for fp16 at 6.2x to
12x, fp16 when asked for bf16 at 0.13x to 0.19x, fp32 when asked for either below 1e-3x. A
transposed kernel or a shifted padding in one layer gave 2.9x to 150x. The check cannot see a
bug smaller than the precision's own rounding: 1% noise on one layer's weights is 1.5x to 1.9x
at bf16, which rounds every weight of every layer by up to 0.39%.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass

import numpy as np

from fsrt.precision import Precision, torch_dtype

FP32_BOUND = 1e-4
UPPER_FACTOR = 3.0
LOWER_FACTOR = 4.0
RULE = f"rel-l2:fp32<={FP32_BOUND:g}:half in [e/{LOWER_FACTOR:g}, {UPPER_FACTOR:g}e]"  # keys stored verdicts
SINGLE_THREAD_FLOPS = 2e9  # below this much reference work, one thread is as fast and far more robust


@dataclass(frozen=True)
class Errors:
    """How far outputs are from the reference (see the module docstring)."""

    max_abs: float
    max_rel: float
    rel_l2: float


def compare(out, ref) -> Errors:
    """The errors of ``out`` against ``ref`` (arrays, or lists of arrays taken together).

    Non-finite outputs give infinite errors; a shape mismatch raises ``ValueError``.
    """
    outs, refs = (out, ref) if isinstance(out, (list, tuple)) else ([out], [ref])
    for o, r in zip(outs, refs, strict=True):
        if np.shape(o) != np.shape(r):
            raise ValueError(f"output shape {np.shape(o)} differs from the reference's {np.shape(r)}")
    y = np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in outs])
    r = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in refs])
    if not np.all(np.isfinite(y)):
        return Errors(math.inf, math.inf, math.inf)
    diff = y - r
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    scale, norm = float(np.max(np.abs(r))) if r.size else 0.0, float(np.linalg.norm(r))
    return Errors(max_abs, _ratio(max_abs, scale), _ratio(float(np.linalg.norm(diff)), norm))


def _ratio(err: float, scale: float) -> float:
    return err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` PyTorch intra-op threads (``None``: unchanged), restoring the count after."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reference_threads(model, inputs: list[np.ndarray]) -> int | None:
    """1 for small reference work, else ``None`` (keep PyTorch's count).

    Many small float64 ops on two threads stall badly when other processes share the cores
    (each op waits for a descheduled worker): a fresh 32 px EfficientNet took 0.05 s on one
    thread and up to 45 s on two on the 2-core test machine under load.
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        return None
    from fsrt.complexity import complexity

    work = sum(complexity(spec, int(x.shape[-1])).flops * x.shape[0] for x in inputs)
    return 1 if work < SINGLE_THREAD_FLOPS else None


def _run_float64(model, inputs: list[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """``model`` (float64) on each input, on ``device``: float64 is IEEE double on a GPU too, where a
    large batch's reference does not cost the tens of seconds it takes on a few CPU cores."""
    import torch

    model = model.to(device)
    threads = reference_threads(model, inputs) if device == "cpu" else None
    with torch.no_grad(), torch_threads(threads):
        return [model(torch.from_numpy(np.asarray(x, dtype=np.float64)).to(device)).cpu().numpy() for x in inputs]


def reference_outputs(model, inputs: list[np.ndarray], device: str = "cpu") -> list[np.ndarray]:
    """Outputs of ``model`` in float64 for each input array (the model is copied, not changed),
    computed on ``device``."""
    return _run_float64(copy.deepcopy(model).cpu().eval().double(), inputs, device)


def emulate(model, inputs: list[np.ndarray], precision: Precision, activations: bool = True,
            device: str = "cpu") -> list[np.ndarray]:
    """Outputs of ``model`` computed in float64 with ``precision``'s rounding: every conv and
    linear layer's weights and bias are rounded to it and, with ``activations``, so are its input
    and its output. Without ``activations`` only the weights are rounded (a graph whose weights
    are half precision but whose arithmetic is fp32)."""
    import torch

    dtype = torch_dtype(precision)

    def rnd(t):
        return t.to(dtype).to(torch.float64)

    m = copy.deepcopy(model).cpu().eval().double()
    with torch.no_grad():
        for layer in m.modules():
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                layer.weight.copy_(rnd(layer.weight))
                if layer.bias is not None:
                    layer.bias.copy_(rnd(layer.bias))
                if activations:
                    layer.register_forward_pre_hook(lambda _m, args: (rnd(args[0]), *args[1:]))
                    layer.register_forward_hook(lambda _m, _args, out: rnd(out))
    return _run_float64(m, inputs, device)


def expected_error(model, inputs: list[np.ndarray], refs: list[np.ndarray], precision: Precision,
                   activations: bool = True, device: str = "cpu") -> float | None:
    """The relative L2 error ``precision``'s rounding gives ``model`` on ``inputs`` (``refs``: the
    float64 outputs), or ``None`` for fp32, which is judged by ``FP32_BOUND``."""
    if precision.name == "fp32":
        return None
    return compare(emulate(model, inputs, precision, activations, device), list(refs)).rel_l2


@dataclass(frozen=True)
class Judgement:
    """The verdict on one runtime's error: the accepted range and, when outside it, why."""

    passed: bool
    lower: float
    upper: float
    reason: str | None = None


def judge(rel_l2: float, precision: Precision, expected: float | None) -> Judgement:
    """Apply the rule of the module docstring to a runtime's relative L2 error."""
    if expected is None or precision.name == "fp32":
        ok = rel_l2 <= FP32_BOUND
        why = None if ok else f"relative error {rel_l2:.2e} > {FP32_BOUND:.0e} ({precision.name} bound)"
        return Judgement(ok, 0.0, FP32_BOUND, why)
    upper, lower = max(UPPER_FACTOR * expected, FP32_BOUND), expected / LOWER_FACTOR
    what = f"{precision.name} rounding gives this model {expected:.2e}"
    if not rel_l2 <= upper:
        return Judgement(False, lower, upper, f"relative error {rel_l2:.2e} is over {UPPER_FACTOR:g}x what {what}: "
                                              "more error than the precision explains")
    if rel_l2 < lower:
        return Judgement(False, lower, upper, f"relative error {rel_l2:.2e} is under 1/{LOWER_FACTOR:g} of what "
                                              f"{what}: the runtime did not compute in {precision.name}")
    return Judgement(True, lower, upper)
