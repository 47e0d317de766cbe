"""``fsrt::group_conv2d``: the grouped conv as a ``torch.library`` custom op, plus its Python entry.

The op is opaque to torch.compile / torch.export (they trace it through the fake implementation)
and is what the ONNX exporter turns into a TensorRT-plugin node. Its real implementation runs
the Triton kernel when it can (CUDA, or CPU under ``TRITON_INTERPRET=1``) and otherwise falls back
to ``F.conv2d`` + the same epilogue, so a patched model runs everywhere.

Semantics: ``y = act(conv(x, weight) * scale[c] + bias[c])`` with ``scale`` optional (a folded
BatchNorm multiplies, then its shift is passed as ``bias``) and ``act`` in none | relu | silu.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import group_conv as gc

OP_NAME = "fsrt::group_conv2d"


class KernelInputError(ValueError):
    """Bad arguments to a fsrt kernel (one line: what is wrong and what to do)."""


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise KernelInputError(f"{name} must be an int or a pair of ints, got {value!r}")


def resolve_padding(padding, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Numeric (top/bottom, left/right) padding from an int, a pair, 'valid' or 'same' (odd kernels, stride 1)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            if stride != (1, 1) or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                raise KernelInputError("padding='same' needs stride 1 and an odd kernel; give numeric padding instead")
            return ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        raise KernelInputError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    pad = _pair(padding, "padding")
    if min(pad) < 0:
        raise KernelInputError(f"padding must be >= 0, got {pad}")
    return pad


def check_args(x, weight, bias, stride, padding, groups, scale=None, activation="none", dilation=1):
    """Validate a grouped-conv call; returns a ``ConvGeometry`` or raises ``KernelInputError``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise KernelInputError(f"x must be a 4-D (N, C, H, W) tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise KernelInputError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got {getattr(weight, 'shape', None)}")
    if _pair(dilation, "dilation") != (1, 1):
        raise KernelInputError(f"dilation {dilation} is not supported (only 1); keep this layer on F.conv2d")
    if not isinstance(groups, int) or groups < 1:
        raise KernelInputError(f"groups must be a positive int, got {groups!r}")
    n, c_in, h, w = x.shape
    c_out, cin_g, kh, kw = weight.shape
    if c_in % groups or c_out % groups:
        raise KernelInputError(f"channels in/out ({c_in}/{c_out}) must both be divisible by groups={groups}")
    if cin_g != c_in // groups:
        raise KernelInputError(
            f"weight has {cin_g} input channels per group but x has {c_in} channels / {groups} groups"
            f" = {c_in // groups}"
        )
    if x.dtype != weight.dtype or not x.dtype.is_floating_point:
        raise KernelInputError(f"x and weight must share one floating dtype, got {x.dtype} and {weight.dtype}")
    if x.device != weight.device:
        raise KernelInputError(f"x is on {x.device} but weight is on {weight.device}")
    for name, vec in (("bias", bias), ("scale", scale)):
        if vec is not None and (vec.dim() != 1 or vec.numel() != c_out or vec.device != x.device):
            raise KernelInputError(f"{name} must be a 1-D tensor of {c_out} values on {x.device}")
    if activation not in gc.ACTIVATIONS:
        raise KernelInputError(f"activation must be one of {sorted(gc.ACTIVATIONS)}, got {activation!r}")
    st = _pair(stride, "stride")
    if min(st) < 1:
        raise KernelInputError(f"stride must be >= 1, got {st}")
    pad = resolve_padding(padding, (kh, kw), st)
    geo = gc.ConvGeometry(n, c_in, h, w, c_out, kh, kw, groups, st, pad)
    if min(geo.out_hw) < 1:
        raise KernelInputError(f"input {h}x{w} is smaller than the {kh}x{kw} kernel with padding {pad}")
    return geo


def reference(x, weight, bias, stride, padding, groups, scale=None, activation="none") -> torch.Tensor:
    """The same computation in plain PyTorch (``F.conv2d`` + epilogue): fallback and test oracle."""
    y = F.conv2d(x, weight, None, stride, padding, 1, groups)
    if scale is not None:
        y = y * scale.view(1, -1, 1, 1).to(y.dtype)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1).to(y.dtype)
    if activation == "relu":
        y = torch.relu(y)
    elif activation == "silu":
        y = F.silu(y)
    return y


@torch.library.custom_op(OP_NAME, mutates_args=())
def _group_conv2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    groups: int,
    scale: torch.Tensor | None = None,
    activation: str = "none",
) -> torch.Tensor:
    geo = check_args(x, weight, bias, tuple(stride), tuple(padding), groups, scale, activation)
    if triton_usable(x):
        return gc.launch(x, weight, bias, geo, scale, activation)
    y = reference(x, weight, bias, geo.stride, geo.padding, groups, scale, activation)
    out = gc.output_like(x, tuple(y.shape))
    if y.stride() == out.stride():  # F.conv2d already produced the layout the fake impl promises
        return y
    out.copy_(y)
    return out


@_group_conv2d_op.register_fake
def _group_conv2d_fake(x, weight, bias, stride, padding, groups, scale=None, activation="none"):
    n, _, h, w = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    return gc.output_like(x, (n, weight.shape[0], oh, ow))


def triton_usable(x: torch.Tensor) -> bool:
    """True when the op will run the Triton kernel for ``x`` (dtype supported and a backend exists)."""
    return x.dtype in gc.SUPPORTED_DTYPES and gc.triton_runs_on(x.device)


def group_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    groups: int = 1,
    *,
    scale: torch.Tensor | None = None,
    activation: str | None = None,
    dilation=1,
) -> torch.Tensor:
    """Grouped 2-D convolution ``act(conv(x, weight) * scale + bias)`` through ``fsrt::group_conv2d``.

    Same argument meaning as ``F.conv2d`` (dilation must be 1); ``scale``/``bias`` are per output
    channel (a folded BatchNorm) and ``activation`` is None, 'relu' or 'silu'. Runs the Triton
    kernels on CUDA (or CPU when ``TRITON_INTERPRET=1``), ``F.conv2d`` otherwise. Raises
    ``KernelInputError`` for unsupported or inconsistent arguments.
    """
    act = activation or "none"
    geo = check_args(x, weight, bias, stride, padding, groups, scale, act, dilation)
    return torch.ops.fsrt.group_conv2d(x, weight, bias, list(geo.stride), list(geo.padding), groups, scale, act)


def triton_group_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    groups: int = 1,
    *,
    scale: torch.Tensor | None = None,
    activation: str | None = None,
    path: str = "auto",
    out: torch.Tensor | None = None,
    blocks: dict | None = None,
) -> torch.Tensor:
    """Call the Triton kernel directly (no custom op, no fallback): for tests and benchmarks.

    ``path`` forces 'direct' or 'gemm'; ``blocks`` fixes tile sizes; ``out`` is written in place.
    """
    act = activation or "none"
    geo = check_args(x, weight, bias, stride, padding, groups, scale, act)
    if x.dtype not in gc.SUPPORTED_DTYPES:
        raise KernelInputError(f"Triton kernels support float32/float16/bfloat16, got {x.dtype}")
    if not gc.triton_runs_on(x.device):
        raise KernelInputError(
            f"Triton cannot run on {x.device} here (needs triton and CUDA, or TRITON_INTERPRET=1 with CPU tensors)"
        )
    if path not in ("auto", "direct", "gemm"):
        raise KernelInputError(f"path must be auto, direct or gemm, got {path!r}")
    return gc.launch(x, weight, bias, geo, scale, act, path=path, out=out, blocks=blocks)
