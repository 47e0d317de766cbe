"""Output parity of an exported ONNX graph against the PyTorch model it came from.

The reference is the *unexported* PyTorch model (BatchNorm not folded) evaluated in float64
on the same inputs, so the check covers BN folding, the exporter, graph simplification and the
graph's own precision at once. Inputs are fresh random normals from a seed drawn per check
(reported, so a failure can be reproduced). Half-precision graphs get inputs rounded to their
precision, and the reference sees the same rounded values.

Error measures: ``max_abs = max|y - ref|`` and ``max_rel = max_abs / max|ref|`` (relative to
the output's scale; element-wise ratios are meaningless for logits near zero).
"""

from __future__ import annotations

import contextlib
import copy
import secrets
from dataclasses import asdict, dataclass, field

import numpy as np

from fsrt.precision import ONNX_BFLOAT16, ONNX_FLOAT, Precision, ort_numpy_dtype, torch_dtype

BF16_NOTE = ("no CPU runtime here executes bf16 Conv (ONNX Runtime and OpenVINO reject it), so the bf16 "
             "graph ran with its bf16 weights and inputs widened exactly to fp32: this checks the graph "
             "and its weight rounding, not bf16 arithmetic")


@dataclass(frozen=True)
class Parity:
    """Result of one parity check (``passed`` is ``None`` when the check was skipped)."""

    max_abs: float | None
    max_rel: float | None
    bound: float
    passed: bool | None
    runtime: str | None = None
    batches: tuple[int, ...] = ()
    seed: int | None = None
    note: str | None = None
    skipped: str | None = None
    ref_scale: float | None = field(default=None)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["batches"] = list(self.batches)
        return d

    def summary(self) -> str:
        """One line for messages: numbers, bound and verdict."""
        if self.skipped:
            numbers = f" (max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g})" if self.max_abs is not None else ""
            return f"parity skipped: {self.skipped}{numbers}"
        verdict = "passed" if self.passed else "FAILED"
        return (f"parity {verdict}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g} "
                f"(bound {self.bound:.0e}, {self.runtime}, batches {list(self.batches)}, seed {self.seed})")


def skipped(bound: float, reason: str) -> Parity:
    """A ``Parity`` that records why no check ran."""
    return Parity(None, None, bound, None, skipped=reason)


SINGLE_THREAD_FLOPS = 2e9  # below this much reference work, one thread is as fast and far more robust


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


def reference_outputs(model, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``model`` in float64 for each float64 input array (model is copied, not changed)."""
    import torch

    ref = copy.deepcopy(model).cpu().eval().double()
    with torch.no_grad(), torch_threads(reference_threads(model, inputs)):
        return [ref(torch.from_numpy(x)).numpy() for x in inputs]


def widen_bf16(model_proto):
    """A copy of an ONNX model with every bf16 tensor turned into fp32 (values exactly preserved).

    Used to run a bf16 graph where no runtime can: structure, weights and inputs are the bf16
    ones; only the arithmetic is fp32.
    """
    from onnx import numpy_helper

    m = copy.deepcopy(model_proto)

    def widen_tensor(t):
        if t.data_type == ONNX_BFLOAT16:
            arr = numpy_helper.to_array(t).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(arr, t.name))

    def widen_graph(g):
        for t in g.initializer:
            widen_tensor(t)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.tensor_type.elem_type == ONNX_BFLOAT16:
                vi.type.tensor_type.elem_type = ONNX_FLOAT
        for node in g.node:
            for a in node.attribute:
                if a.name == "to" and a.i == ONNX_BFLOAT16:
                    a.i = ONNX_FLOAT
                if a.HasField("t"):
                    widen_tensor(a.t)
                if a.HasField("g"):
                    widen_graph(a.g)

    widen_graph(m.graph)
    return m


def _round_to(x: np.ndarray, precision: Precision) -> np.ndarray:
    """``x`` (float32) rounded to ``precision`` and returned as float32."""
    import torch

    return torch.from_numpy(x).to(torch_dtype(precision)).float().numpy()


def _ort_session(model):
    """An ONNX Runtime CPU session for a path or serialized bytes, with warnings silenced."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def check_parity(onnx_model, model, *, batches, chw, precision: Precision, seed: int | None = None) -> Parity:
    """Run ``onnx_model`` (a path or serialized bytes) in ONNX Runtime (CPU) and compare with
    ``model`` in float64.

    ``batches``: batch sizes to try (one for a static graph; several, including sizes other
    than the export example, for a dynamic one). ``chw``: (channels, height, width).
    """
    import onnx

    seed = secrets.randbits(31) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    inputs = [_round_to(rng.standard_normal((b, *chw), dtype=np.float32), precision) for b in batches]
    refs = reference_outputs(model, [x.astype(np.float64) for x in inputs])

    note = None
    if precision.onnx_elem_type == ONNX_BFLOAT16:
        proto = onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx.load(str(onnx_model))
        sess = _ort_session(widen_bf16(proto).SerializeToString())
        feed_dtype, note = np.float32, BF16_NOTE
    else:
        sess = _ort_session(onnx_model if isinstance(onnx_model, bytes) else str(onnx_model))
        feed_dtype = ort_numpy_dtype(precision)
    name = sess.get_inputs()[0].name
    max_abs, scale = 0.0, 0.0
    for x, ref in zip(inputs, refs):
        y = sess.run(None, {name: x.astype(feed_dtype)})[0].astype(np.float64)
        if y.shape != ref.shape:
            return Parity(float("inf"), float("inf"), precision.bound, False, "onnxruntime-cpu", tuple(batches),
                          seed, f"output shape {y.shape} != PyTorch {ref.shape}")
        max_abs = max(max_abs, float(np.max(np.abs(y - ref))) if np.all(np.isfinite(y)) else float("inf"))
        scale = max(scale, float(np.max(np.abs(ref))))
    max_rel = max_abs / scale if scale > 0 else max_abs
    runtime = "onnxruntime-cpu (bf16 widened to fp32)" if note else "onnxruntime-cpu"
    floor = too_small_to_compare(scale, precision)
    if floor:
        return Parity(max_abs, max_rel, precision.bound, None, runtime, tuple(batches), seed, note, floor, scale)
    return Parity(max_abs, max_rel, precision.bound, bool(max_rel < precision.bound), runtime,
                  tuple(batches), seed, note, None, scale)


def too_small_to_compare(scale: float, precision: Precision) -> str | None:
    """Why a relative error is meaningless at this output scale, or ``None``.

    A half-precision graph cannot represent outputs below its normal range (fp16: 6.1e-5), and
    untrained networks can produce them: with fresh BatchNorm statistics the linear-bottleneck
    families (EfficientNet, RegNetZ) shrink activations about 10x per stage, so a fresh
    EfficientNet-B0 outputs ~1e-14. The check is then reported as not measurable, not passed.
    """
    import torch

    tiny = float(torch.finfo(torch_dtype(precision)).tiny)
    if scale >= 16 * tiny:
        return None
    return (f"not measurable: the PyTorch outputs peak at {scale:.2g}, below {precision.name}'s normal range "
            f"({tiny:.2g}); untrained BatchNorm statistics shrink activations layer by layer, so check "
            f"{precision.name} parity with trained weights (a checkpoint)")
