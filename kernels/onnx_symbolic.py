"""ONNX export of ``fsrt::group_conv2d`` as a custom-domain node a TensorRT plugin can claim.

TensorRT's ONNX parser imports any node it does not know as a plugin: it looks up a plugin
creator whose *name* is the node's ``op_type``, and reads the optional string attributes
``plugin_version`` (default "1") and ``plugin_namespace`` (default ""); an int attribute ``aot=1``
selects the plugin's ahead-of-time implementation; every other attribute is handed to the plugin
as a field. So the node emitted here is

    domain="fsrt", op_type="group_conv2d",
    attributes: plugin_namespace="fsrt", aot=1, stride=[sh, sw], padding=[ph, pw],
                groups=g, activation="none|relu|silu"
    inputs: X, W, B (bias; zeros when absent), S (scale; ones when absent)

matching ``@trtp.register("fsrt::group_conv2d")`` in ``trt_plugin.py``. Bias and scale are always
present so the plugin has one fixed signature. ONNX Runtime cannot run this node (it is for
TensorRT); export the unpatched model for other runtimes.

Use: ``torch.onnx.export(model, args, dynamo=True, custom_translation_table=onnx_custom_translation_table())``.
"""

from __future__ import annotations

DOMAIN = "fsrt"
OP_TYPE = "group_conv2d"
PLUGIN_NAMESPACE = "fsrt"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{OP_TYPE}"


def register_onnx_schema() -> None:
    """Register the node's schema with onnx (once) so onnxscript can build and check it."""
    from onnx import defs

    if defs.has(OP_TYPE, DOMAIN):
        return
    schema_cls = defs.OpSchema
    param = schema_cls.FormalParameter
    attr = schema_cls.Attribute
    types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
    schema = schema_cls(
        OP_TYPE,
        DOMAIN,
        1,
        doc="Grouped conv2d y = act(conv(X, W) * S + B), implemented by the fsrt TensorRT plugin.",
        inputs=[param("X", "T"), param("W", "T"), param("B", "T"), param("S", "T")],
        outputs=[param("Y", "T")],
        type_constraints=[("T", types, "floating tensors")],
        attributes=[
            attr("stride", schema_cls.AttrType.INTS, "stride (h, w)"),
            attr("padding", schema_cls.AttrType.INTS, "zero padding (h, w), symmetric"),
            attr("groups", schema_cls.AttrType.INT, "number of groups"),
            attr("activation", schema_cls.AttrType.STRING, "none, relu or silu"),
            attr("plugin_namespace", schema_cls.AttrType.STRING, "TensorRT plugin namespace"),
            attr("aot", schema_cls.AttrType.INT, "1: use the plugin's ahead-of-time (compiled Triton) implementation"),
        ],
    )
    defs.register_schema(schema)


def _filled(like, weight, value: float):
    """A 1-D tensor of ``value`` with one entry per output channel, in ``like``'s dtype."""
    import onnx_ir as ir
    from onnxscript import opset18 as op

    channels = op.Shape(weight, start=0, end=1)
    return op.ConstantOfShape(channels, value=ir.tensor([value], dtype=like.dtype))


def translate_group_conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0), groups=1, scale=None,
                           activation="none"):  # fmt: skip
    """onnxscript translation of ``fsrt::group_conv2d`` into the plugin node."""
    import onnxscript

    register_onnx_schema()
    opset = onnxscript.values.Opset(DOMAIN, 1)
    bias = _filled(x, weight, 0.0) if bias is None else bias
    scale = _filled(x, weight, 1.0) if scale is None else scale
    return opset.group_conv2d(
        x,
        weight,
        bias,
        scale,
        stride=[int(s) for s in stride],
        padding=[int(p) for p in padding],
        groups=int(groups),
        activation=str(activation),
        plugin_namespace=PLUGIN_NAMESPACE,
        aot=1,
    )


def onnx_custom_translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``: maps our op to the plugin node."""
    import torch

    from . import op  # noqa: F401  (registers torch.ops.fsrt.group_conv2d)

    register_onnx_schema()
    return {torch.ops.fsrt.group_conv2d.default: translate_group_conv2d}


def reference_evaluator_ops() -> list:
    """``new_ops`` for ``onnx.reference.ReferenceEvaluator`` so graphs holding the plugin node can run
    on CPU (ONNX Runtime cannot): a parity check of the exported graph without TensorRT."""
    import numpy as np
    from onnx.reference.op_run import OpRun

    class group_conv2d(OpRun):  # noqa: N801  (the class name is the ONNX op type)
        op_domain = DOMAIN

        def _run(self, x, w, b, s, stride=None, padding=None, groups=None, activation=None, **_plugin_attrs):
            import torch

            from .op import reference

            act = activation.decode() if isinstance(activation, bytes) else str(activation)
            as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))
            y = reference(as_t(x), as_t(w), as_t(b), tuple(int(v) for v in stride), tuple(int(v) for v in padding),
                          int(groups), as_t(s), act)  # fmt: skip
            return (y.numpy().astype(x.dtype),)

    return [group_conv2d]
