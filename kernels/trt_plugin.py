"""TensorRT plugin ``fsrt::group_conv2d`` (``tensorrt.plugin``, ahead-of-time Triton implementation).

Call ``register_trt_plugin()`` before parsing an ONNX model exported with
``onnx_custom_translation_table()``: TensorRT's ONNX parser then maps every ``group_conv2d`` node
(``plugin_namespace="fsrt"``, ``aot=1``) to this plugin, and the engine embeds the Triton kernel as
PTX (no Python at inference time). Two tactics (direct, implicit GEMM) are offered and TensorRT
times them at build time.

TensorRT is imported lazily and only here; nothing else in fsrt.kernels needs it. This module is
not exercised by the CPU test-suite (no TensorRT there); the kernels it compiles are, and
``group_conv.aot_compile`` is tested for sm_90 without a GPU, including the PTX signature
trimmed to TensorRT's (inputs, scalars, outputs) convention and re-assembled with ptxas.
"""

import torch

from . import group_conv as gc
from .onnx_symbolic import PLUGIN_ID

TACTIC_DIRECT = 1
TACTIC_GEMM = 2
# Fixed tiles per tactic (the AOT path cannot run Triton's autotuner): mid-size defaults.
TRT_BLOCKS = {
    TACTIC_DIRECT: ("direct", {"BLOCK_P": 128, "BLOCK_C": 16}, 4),
    TACTIC_GEMM: ("gemm", {"BLOCK_M": 128, "BLOCK_N": 32, "BLOCK_K": 32}, 4),
}
_REGISTERED = False


def tensorrt_available() -> bool:
    """True when ``tensorrt`` with the ``tensorrt.plugin`` module (TensorRT >= 10.7) imports."""
    try:
        import tensorrt.plugin  # noqa: F401
    except Exception:
        return False
    return True


def _static_dim(desc, axis: int) -> int:
    """A build-time constant dimension of ``desc`` (weights have static shapes)."""
    expr = desc.shape_expr[axis]
    try:
        if expr.is_constant:
            return int(expr.constant_value())
    except RuntimeError:  # a "fake" shape expression outside shape calculations
        pass
    return int(desc.shape[axis])


def register_trt_plugin() -> None:
    """Register the plugin's shape descriptor, format/tactic list and AOT implementation (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    if not tensorrt_available():
        raise RuntimeError("TensorRT with tensorrt.plugin (>= 10.7) is not installed: cannot register the plugin")
    import numpy as np
    import numpy.typing as npt
    import tensorrt as trt
    import tensorrt.plugin as trtp

    dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16}

    @trtp.register(PLUGIN_ID)
    def _desc(x: trtp.TensorDesc, w: trtp.TensorDesc, b: trtp.TensorDesc, s: trtp.TensorDesc,
              stride: npt.NDArray[np.int32], padding: npt.NDArray[np.int32], groups: int,
              activation: str) -> trtp.TensorDesc:  # fmt: skip
        out = x.like()
        out.shape_expr[1] = w.shape_expr[0]
        for axis in (2, 3):
            i = axis - 2
            out.shape_expr[axis] = (x.shape_expr[axis] + int(2 * padding[i]) - w.shape_expr[axis]) // int(stride[i]) + 1
        return out

    @trtp.autotune(PLUGIN_ID)
    def _tune(x, w, b, s, stride, padding, groups, activation, outputs):
        combo = trtp.AutoTuneCombination("FP32|FP16|BF16, FP32|FP16|BF16, FP32|FP16|BF16, FP32|FP16|BF16, "
                                         "FP32|FP16|BF16", "LINEAR")  # fmt: skip
        combo.tactics([TACTIC_DIRECT, TACTIC_GEMM])  # both are correct for any width; TensorRT times them
        return [combo]

    @trtp.aot_impl(PLUGIN_ID)
    def _aot(x, w, b, s, stride, padding, groups, activation, outputs, tactic):
        path, blocks, warps = TRT_BLOCKS[int(tactic)]
        co, cin_g, kh, kw = (_static_dim(w, i) for i in range(4))
        cout_g = co // int(groups)
        consts = dict(
            STRIDE_H=int(stride[0]), STRIDE_W=int(stride[1]), PAD_H=int(padding[0]), PAD_W=int(padding[1]),
            KH=kh, KW=kw, HAS_BIAS=True, HAS_SCALE=True, ACT=gc.ACTIVATIONS[str(activation)], **blocks,
        )  # fmt: skip
        dtype = dtypes[x.dtype]
        if path == "gemm":  # exact fp32 products (no TF32) for fp32 engines; ignored for fp16/bf16
            consts.update(DOT_F32=False, PRECISION="ieee" if dtype == torch.float32 else "tf32")
        compiled = gc.aot_compile(path, dtype, consts, num_warps=warps)
        xs, ys = x.shape_expr, outputs[0].shape_expr
        n, c, h, wd = xs[0], xs[1], xs[2], xs[3]
        oh, ow = ys[2], ys[3]
        p = n * oh * ow
        # Same order as the kernel's int32 parameters (contiguous NCHW strides for x, weight, y).
        scalars = [h, wd, co, oh, ow, p, cin_g, cout_g]
        scalars += [c * h * wd, h * wd, wd, 1, cin_g * kh * kw, kh * kw, kw, 1, oh * ow * co, oh * ow, ow, 1]
        extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(e) for e in scalars])
        launch = trtp.KernelLaunchParams()
        if path == "gemm":
            launch.grid_x = trtp.cdiv(p, blocks["BLOCK_M"])
            launch.grid_y = int(groups) * -(-cout_g // blocks["BLOCK_N"])
        else:
            launch.grid_x = trtp.cdiv(p, blocks["BLOCK_P"])
            launch.grid_y = -(-co // blocks["BLOCK_C"])
        launch.block_x = compiled.metadata.num_warps * 32
        launch.shared_mem = compiled.metadata.shared
        ptx = gc.strip_trailing_params(compiled.asm["ptx"], compiled.metadata.name, gc.kernel_param_count(path, consts))
        return compiled.metadata.name.encode(), ptx.encode(), launch, extra

    _REGISTERED = True
