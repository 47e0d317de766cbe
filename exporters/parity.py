"""Output parity of an exported ONNX graph against the PyTorch model it came from.

The reference is the *unexported* PyTorch model (BatchNorm not folded) evaluated in float64
on the same inputs, so the check covers BN folding, the exporter, graph simplification and the
graph's own precision at once. Inputs are fresh random normals from a seed drawn per check
(reported, so a failure can be reproduced). Half-precision graphs get inputs rounded to their
precision, and the reference sees the same rounded values. The comparison and its rule are
``fsrt.accuracy``'s, the same ones ``fsrt bench`` applies to every timed call.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import asdict, dataclass

import numpy as np

from fsrt.accuracy import compare, expected_error, judge, reference_outputs
from fsrt.precision import ONNX_BFLOAT16, ONNX_FLOAT, Precision, ort_numpy_dtype, torch_dtype

BF16_NOTE = ("no CPU runtime here executes bf16 Conv (ONNX Runtime and OpenVINO reject it), so the bf16 "
             "graph ran with its bf16 weights and inputs widened exactly to fp32: this checks the graph "
             "and its weight rounding (expected error: bf16 weights, fp32 arithmetic), not bf16 arithmetic")


@dataclass(frozen=True)
class Parity:
    """Result of one parity check (``passed`` is ``None`` when the check was skipped).

    ``rel_l2`` is the judged error, ``expected`` the error the precision's rounding gives this
    model (``None`` for fp32), ``lower``/``upper`` the accepted range (``fsrt.accuracy``).
    """

    max_abs: float | None
    max_rel: float | None
    rel_l2: float | None
    expected: float | None
    lower: float | None
    upper: float | None
    passed: bool | None
    runtime: str | None = None
    batches: tuple[int, ...] = ()
    seed: int | None = None
    note: str | None = None
    skipped: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["batches"] = list(self.batches)
        return d

    def accepted(self) -> str:
        """The accepted range of ``rel_l2`` in words."""
        if self.upper is None:
            return "-"
        return f"<= {self.upper:.0e}" if not self.lower else f"{self.lower:.2g} .. {self.upper:.2g}"

    def summary(self) -> str:
        """One line for messages: numbers, accepted range and verdict."""
        if self.skipped:
            return f"parity skipped: {self.skipped}"
        if self.rel_l2 is None:
            return f"parity FAILED: {self.reason} ({self.runtime}, batches {list(self.batches)}, seed {self.seed})"
        verdict = "passed" if self.passed else "FAILED"
        expected = f", expected {self.expected:.2g} from rounding" if self.expected is not None else ""
        why = f": {self.reason}" if self.reason else ""
        return (f"parity {verdict}{why} (relative L2 error {self.rel_l2:.3g}{expected}, accepted {self.accepted()}; "
                f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}; {self.runtime}, batches "
                f"{list(self.batches)}, seed {self.seed})")


def skipped(reason: str) -> Parity:
    """A ``Parity`` that records why no check ran."""
    return Parity(None, None, None, None, None, None, None, skipped=reason)


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


def _session(onnx_model, precision: Precision):
    """``(session, numpy feed dtype, note)``: bf16 graphs run widened to fp32 (``BF16_NOTE``)."""
    import onnx

    if precision.onnx_elem_type == ONNX_BFLOAT16:
        proto = onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx.load(str(onnx_model))
        return _ort_session(widen_bf16(proto).SerializeToString()), np.float32, BF16_NOTE
    sess = _ort_session(onnx_model if isinstance(onnx_model, bytes) else str(onnx_model))
    return sess, ort_numpy_dtype(precision), None


def check_parity(onnx_model, model, *, batches, chw, precision: Precision, seed: int | None = None) -> Parity:
    """Run ``onnx_model`` (a path or serialized bytes) in ONNX Runtime (CPU) and judge its outputs
    against ``model`` in float64 with ``fsrt.accuracy``'s rule.

    ``batches``: batch sizes to try (one for a static graph; several, including sizes other
    than the export example, for a dynamic one). ``chw``: (channels, height, width).
    """
    seed = secrets.randbits(31) if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    inputs = [_round_to(rng.standard_normal((b, *chw), dtype=np.float32), precision) for b in batches]
    wide = [x.astype(np.float64) for x in inputs]
    refs = reference_outputs(model, wide)
    sess, feed_dtype, note = _session(onnx_model, precision)
    runtime = "onnxruntime-cpu (bf16 widened to fp32)" if note else "onnxruntime-cpu"
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x.astype(feed_dtype)})[0] for x in inputs]
    try:
        errors = compare(outs, refs)
    except ValueError as e:
        return Parity(None, None, None, None, None, None, False, runtime, tuple(batches), seed, note, None, str(e))
    expected = expected_error(model, wide, refs, precision, activations=note is None)
    verdict = judge(errors.rel_l2, precision, expected)
    return Parity(errors.max_abs, errors.max_rel, errors.rel_l2, expected, verdict.lower, verdict.upper,
                  verdict.passed, runtime, tuple(batches), seed, note, None, verdict.reason)
