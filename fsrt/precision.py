"""Numeric precisions (fp32, fp16, bf16): every fact fsrt needs about one, in one table.

Export, parity, the TensorRT settings and the benchmark runners and ceilings all read this
table; nothing else spells out a dtype, an ONNX element type, an element size or a runtime's
precision name.

TensorRT 11 builds strongly typed networks only, so an fp16 or bf16 engine comes from an
fp16/bf16 ONNX graph; the precision of an export therefore lives in the graph itself.

How far a precision's outputs may be from the float64 model is not a fixed number per
precision: it depends on the network, so ``fsrt.accuracy`` derives it from the model itself
(docs/architecture.md, "Precisions").
"""

from __future__ import annotations

from dataclasses import dataclass

from fsrt.errors import FsrtError

# ONNX TensorProto element types (onnx.TensorProto.FLOAT / FLOAT16 / BFLOAT16).
ONNX_FLOAT, ONNX_FLOAT16, ONNX_BFLOAT16 = 1, 10, 16


@dataclass(frozen=True)
class Precision:
    """One precision and how each library names it.

    ``torch_dtype``: attribute of ``torch``; ``onnx_elem_type``: TensorProto element type;
    ``element_bytes``: bytes per value (roofline traffic); ``ort_numpy_dtype``: the numpy dtype
    ONNX Runtime is fed for a graph of this precision (``None``: ONNX Runtime has no kernels for
    it); ``openvino_hint``: OpenVINO's ``INFERENCE_PRECISION_HINT``; ``unit_roundoff``: half the
    distance from 1 to the next value.
    """

    name: str
    torch_dtype: str
    onnx_elem_type: int
    element_bytes: int
    ort_numpy_dtype: str | None
    openvino_hint: str
    unit_roundoff: float


PRECISIONS = {
    "fp32": Precision("fp32", "float32", ONNX_FLOAT, 4, "float32", "f32", 2.0**-24),
    "fp16": Precision("fp16", "float16", ONNX_FLOAT16, 2, "float16", "f16", 2.0**-11),
    "bf16": Precision("bf16", "bfloat16", ONNX_BFLOAT16, 2, None, "bf16", 2.0**-8),
}

_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}

_NOT_SUPPORTED = {
    "int8": "int8 needs calibration or Q/DQ quantization, which fsrt does not do",
    "fp8": "fp8 needs Q/DQ quantization, which fsrt does not do",
    "int4": "int4 needs Q/DQ quantization, which fsrt does not do",
    "tf32": "tf32 is a GPU math mode of fp32 graphs, not a graph precision; export fp32",
}


def get_precision(name: str) -> Precision:
    """The ``Precision`` named ``name`` (fp32, fp16, bf16 or a dtype alias); a clear ``FsrtError`` otherwise."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key in PRECISIONS:
        return PRECISIONS[key]
    why = _NOT_SUPPORTED.get(key)
    choices = ", ".join(PRECISIONS)
    if why:
        raise FsrtError(f"precision {name!r} is not supported ({why}); choose one of {choices}")
    raise FsrtError(f"unknown precision {name!r}; choose one of {choices}")


def torch_dtype(p: Precision):
    """The torch dtype of a precision (torch is imported lazily so this module stays light)."""
    import torch

    return getattr(torch, p.torch_dtype)


def ort_numpy_dtype(p: Precision):
    """The numpy dtype ONNX Runtime is fed for a ``p`` graph; ``FsrtError`` where ONNX Runtime cannot run ``p``."""
    import numpy as np

    if p.ort_numpy_dtype is None:
        raise FsrtError(f"ONNX Runtime has no {p.name} convolution kernels; measure {p.name} with OpenVINO or eager")
    return np.dtype(p.ort_numpy_dtype)


def precision_of_elem_type(elem_type: int) -> Precision:
    """The precision whose ONNX element type is ``elem_type`` (e.g. a graph input's type)."""
    for p in PRECISIONS.values():
        if p.onnx_elem_type == elem_type:
            return p
    raise FsrtError(f"ONNX element type {elem_type} is not a float precision fsrt exports")
