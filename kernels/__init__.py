"""fsrt.kernels: Triton grouped-convolution kernels, their custom op and export path.

Imports torch (and, lazily, triton/onnx) only, never the fsrt core.

- ``group_conv2d(x, weight, bias, stride, padding, groups, *, scale, activation)``: the op.
- ``patch_model(model, fuse_bn=False, fuse_act=None)``: swap eligible grouped ``nn.Conv2d`` layers for it.
- ``onnx_custom_translation_table()``: pass to ``torch.onnx.export(dynamo=True, custom_translation_table=...)``
  to export the op as a TensorRT-plugin node (domain/namespace ``fsrt``, op ``group_conv2d``).
- ``reference_evaluator_ops()``: ``new_ops`` for ``onnx.reference.ReferenceEvaluator`` to run such a graph on CPU.
- ``trt_plugin.register_trt_plugin()``: the TensorRT plugin for that node (imports TensorRT lazily).
- ``fold_batchnorm(model)`` / ``bn_scale_shift(bn)``: BatchNorm folding in float64 (used by the fused
  epilogue here and by ONNX export in ``fsrt.exporters``).
- ``triton_available()``: whether the Triton kernels can run here (GPU or ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from .bn_fold import bn_scale_shift, count_batchnorm, fold_batchnorm
from .group_conv import GEMM_MIN_GROUP_WIDTH, HAVE_TRITON, choose_path, interpret_enabled, triton_runs_on
from .onnx_symbolic import PLUGIN_ID, onnx_custom_translation_table, reference_evaluator_ops
from .op import KernelInputError, group_conv2d, reference, triton_group_conv2d
from .patch import GroupConv2d, is_eligible, patch_model


def triton_available(device: str = "cuda") -> bool:
    """True when Triton is installed and can run kernels on ``device`` ('cuda', or 'cpu' under
    ``TRITON_INTERPRET=1``); otherwise ``group_conv2d`` silently uses the ``F.conv2d`` fallback."""
    import torch

    return triton_runs_on(torch.device(device))


__all__ = [
    "GEMM_MIN_GROUP_WIDTH",
    "HAVE_TRITON",
    "PLUGIN_ID",
    "GroupConv2d",
    "KernelInputError",
    "bn_scale_shift",
    "choose_path",
    "count_batchnorm",
    "fold_batchnorm",
    "group_conv2d",
    "interpret_enabled",
    "is_eligible",
    "onnx_custom_translation_table",
    "patch_model",
    "reference",
    "reference_evaluator_ops",
    "triton_available",
    "triton_group_conv2d",
]
