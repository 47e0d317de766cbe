"""Triton kernels for grouped 2-D convolution (depthwise through dense) and their launcher.

Two kernels cover the range of group widths ``cin_g = C_in / groups``:

* ``direct``: each program owns a tile of (output pixels x output channels) and accumulates
  ``cin_g * k * k`` broadcast multiply-adds. No tensor cores; ideal for depthwise (``cin_g = 1``)
  and narrow groups, where a GEMM tile would be mostly padding.
* ``gemm``: implicit GEMM per group. The M axis is output pixels, N is the group's output
  channels, K walks (kh, kw, input channel); ``tl.dot`` uses tensor cores. Needs ``cin_g >= 16``
  to fill a K tile, so it is chosen for wide groups (see ``GEMM_MIN_GROUP_WIDTH``).

Kernel parameters are ordered (input pointers, int32 scalars, output pointer, constexprs): the
calling convention of TensorRT's ahead-of-time plugins, so ``trt_plugin.py`` reuses them as is.
Both kernels read and write through explicit strides, so NCHW and channels-last (or any other
strided) tensors need no copies, and both end with an optional fused epilogue
``act(acc * scale[c] + bias[c])`` (a folded BatchNorm plus ReLU/SiLU).

Kernels use only Triton *builtins* (no ``@jit`` helpers from ``triton.language.standard`` such as
``tl.zeros``/``tl.sigmoid``/``tl.cdiv``): those are compiled or interpreted depending on the
environment at *import* time, which would tie interpret mode to import order.
Kernels are built lazily from plain Python functions: ``triton.jit`` (+ autotune) for CUDA, or
Triton's interpreter when ``TRITON_INTERPRET=1`` is set *at call time*, so importing this
module never depends on the environment and tests can switch interpret mode per test.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

try:  # Triton is optional: the op falls back to F.conv2d without it.
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except Exception:  # pragma: no cover - exercised only where triton is missing/broken
    triton = None
    tl = None
    HAVE_TRITON = False

# Group width (input channels per group) from which the implicit-GEMM kernel is used.
# tl.dot needs K tiles of >= 16, so below this the GEMM wastes more than half of every tile.
# Re-measure with `python dev/kernel_speed.py --paths` on a GPU and adjust.
GEMM_MIN_GROUP_WIDTH = 16

ACTIVATIONS = {"none": 0, "relu": 1, "silu": 2}
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpret_enabled() -> bool:
    """True when ``TRITON_INTERPRET`` is set to a true value now (read on every call, never cached)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_runs_on(device: torch.device) -> bool:
    """Whether the Triton kernels can run for tensors on ``device`` (GPU, or CPU in interpret mode)."""
    if not HAVE_TRITON:
        return False
    if interpret_enabled():
        return device.type == "cpu"
    return device.type == "cuda" and torch.cuda.is_available()


if HAVE_TRITON:

    def _direct_kernel(
        x_ptr, w_ptr, b_ptr, s_ptr,
        H, W, CO, OH, OW, P, CIN_G, COUT_G,
        sxn, sxc, sxh, sxw, swo, swi, swh, sww, syn, syc, syh, syw,
        y_ptr,
        STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr, PAD_H: tl.constexpr, PAD_W: tl.constexpr,
        KH: tl.constexpr, KW: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, ACT: tl.constexpr,
        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        """Direct grouped conv: a (BLOCK_P pixels x BLOCK_C output channels) tile per program."""
        pid_p = tl.program_id(0)
        pid_c = tl.program_id(1)
        offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_p = offs_p < P
        mask_c = offs_c < CO
        ohw = OH * OW
        n = offs_p // ohw
        rem = offs_p % ohw
        oh = rem // OW
        ow = rem % OW
        cin0 = (offs_c // COUT_G) * CIN_G  # first input channel of each output channel's group
        x_n = n.to(tl.int64) * sxn
        x_c0 = cin0.to(tl.int64) * sxc
        w_c = w_ptr + offs_c * swo
        acc = tl.full([BLOCK_P, BLOCK_C], 0.0, tl.float32)
        for kh in tl.static_range(KH):
            ih = oh * STRIDE_H - PAD_H + kh
            ok_h = mask_p & (ih >= 0) & (ih < H)
            for kw in tl.static_range(KW):
                iw = ow * STRIDE_W - PAD_W + kw
                ok = (ok_h & (iw >= 0) & (iw < W))[:, None] & mask_c[None, :]
                x_tap = x_ptr + (x_n + ih * sxh + iw * sxw)[:, None] + x_c0[None, :]
                w_tap = w_c + kh * swh + kw * sww
                for j in range(0, CIN_G):  # tap j of output channel c reads input channel group(c)*CIN_G + j
                    xv = tl.load(x_tap + j * sxc, mask=ok, other=0.0)
                    wv = tl.load(w_tap + j * swi, mask=mask_c, other=0.0)
                    acc += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
        if HAS_SCALE:
            acc = acc * tl.load(s_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS:
            acc = acc + tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
        if ACT == 1:
            acc = tl.maximum(acc, 0.0)
        elif ACT == 2:
            acc = acc / (1.0 + tl.exp(tl.minimum(-acc, 80.0)))  # silu; clamp avoids exp overflow
        y_off = (n.to(tl.int64) * syn + oh * syh + ow * syw)[:, None] + (offs_c.to(tl.int64) * syc)[None, :]
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_p[:, None] & mask_c[None, :])

    def _gemm_kernel(
        x_ptr, w_ptr, b_ptr, s_ptr,
        H, W, CO, OH, OW, P, CIN_G, COUT_G,
        sxn, sxc, sxh, sxw, swo, swi, swh, sww, syn, syc, syh, syw,
        y_ptr,
        STRIDE_H: tl.constexpr, STRIDE_W: tl.constexpr, PAD_H: tl.constexpr, PAD_W: tl.constexpr,
        KH: tl.constexpr, KW: tl.constexpr,
        HAS_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, ACT: tl.constexpr,
        DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        """Implicit-GEMM grouped conv: (BLOCK_M pixels x BLOCK_N channels of one group) per program."""
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        tiles_n = (COUT_G + BLOCK_N - 1) // BLOCK_N
        g = pid_n // tiles_n
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_nl = (pid_n % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        mask_m = offs_m < P
        mask_n = offs_nl < COUT_G
        co = g * COUT_G + offs_nl
        ohw = OH * OW
        n = offs_m // ohw
        rem = offs_m % ohw
        oh = rem // OW
        ow = rem % OW
        x_base = n.to(tl.int64) * sxn + (g * CIN_G).to(tl.int64) * sxc
        w_base = co.to(tl.int64) * swo
        acc = tl.full([BLOCK_M, BLOCK_N], 0.0, tl.float32)
        for kh in tl.static_range(KH):
            ih = oh * STRIDE_H - PAD_H + kh
            ok_h = mask_m & (ih >= 0) & (ih < H)
            for kw in tl.static_range(KW):
                iw = ow * STRIDE_W - PAD_W + kw
                ok = ok_h & (iw >= 0) & (iw < W)
                x_pix = x_base + ih * sxh + iw * sxw
                w_tap = w_base + kh * swh + kw * sww
                for k0 in range(0, CIN_G, BLOCK_K):
                    ci = k0 + offs_k
                    mask_k = ci < CIN_G
                    a = tl.load(x_ptr + x_pix[:, None] + (ci * sxc)[None, :],
                                mask=ok[:, None] & mask_k[None, :], other=0.0)
                    b = tl.load(w_ptr + w_tap[None, :] + (ci * swi)[:, None],
                                mask=mask_k[:, None] & mask_n[None, :], other=0.0)
                    if DOT_F32:  # the interpreter's bf16 dot is wrong; upcast there only
                        a = a.to(tl.float32)
                        b = b.to(tl.float32)
                    acc = tl.dot(a, b, acc, input_precision=PRECISION)
        if HAS_SCALE:
            acc = acc * tl.load(s_ptr + co, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        if HAS_BIAS:
            acc = acc + tl.load(b_ptr + co, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        if ACT == 1:
            acc = tl.maximum(acc, 0.0)
        elif ACT == 2:
            acc = acc / (1.0 + tl.exp(tl.minimum(-acc, 80.0)))  # silu; clamp avoids exp overflow
        y_off = (n.to(tl.int64) * syn + oh * syh + ow * syw)[:, None] + (co.to(tl.int64) * syc)[None, :]
        tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def _next_pow2(v: int) -> int:
    return 1 << max(0, int(v) - 1).bit_length()


def _direct_configs():
    shapes = [(64, 32, 4), (128, 16, 4), (32, 64, 4), (256, 8, 4), (128, 32, 8), (64, 64, 8), (16, 128, 4), (512, 4, 4)]
    return [triton.Config({"BLOCK_P": p, "BLOCK_C": c}, num_warps=w, num_stages=2) for p, c, w in shapes]


def _gemm_configs():
    shapes = [
        (64, 16, 16, 4, 3), (128, 16, 16, 4, 3), (64, 32, 32, 4, 3), (128, 32, 32, 4, 3), (128, 32, 16, 4, 4),
        (64, 64, 32, 4, 3), (128, 64, 32, 8, 3), (256, 32, 32, 8, 3), (64, 64, 64, 4, 3), (128, 128, 32, 8, 3),
        (32, 32, 32, 2, 3),
    ]  # fmt: skip
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s) for m, n, k, w, s in shapes
    ]


def _prune_gemm(configs, named_args, **kwargs):
    """Drop GEMM tiles much wider than the group (they would only multiply zero padding)."""
    max_n = max(16, _next_pow2(named_args["COUT_G"]))
    max_k = max(16, _next_pow2(named_args["CIN_G"]))
    kept = [c for c in configs if c.kwargs["BLOCK_N"] <= max_n and c.kwargs["BLOCK_K"] <= max_k]
    return kept or configs[:1]


def _prune_direct(configs, named_args, **kwargs):
    """Drop direct tiles wider than all output channels."""
    max_c = max(4, _next_pow2(named_args["CO"]))
    kept = [c for c in configs if c.kwargs["BLOCK_C"] <= max_c]
    return kept or configs[:1]


_CACHE: dict[tuple[str, str], object] = {}
_TUNE_KEY = ["P", "CO", "CIN_G", "COUT_G", "sxc", "syc"]


def _kernel(path: str, mode: str):
    """The kernel object for ``path`` in ``mode``: 'interpret', 'jit' (fixed blocks) or 'tuned'."""
    key = (path, mode)
    if key not in _CACHE:
        fn = _direct_kernel if path == "direct" else _gemm_kernel
        if mode == "interpret":
            from triton.runtime.interpreter import InterpretedFunction

            _CACHE[key] = InterpretedFunction(fn)
        elif mode == "jit":  # JITFunction directly: triton.jit would interpret if the env var is set now
            from triton.runtime.jit import JITFunction

            _CACHE[key] = JITFunction(fn)
        else:
            configs, prune = (_direct_configs(), _prune_direct) if path == "direct" else (_gemm_configs(), _prune_gemm)
            _CACHE[key] = triton.autotune(configs, key=_TUNE_KEY, prune_configs_by={"early_config_prune": prune})(
                _kernel(path, "jit")
            )
    return _CACHE[key]


# Blocks used when no autotuning happens (interpreter): few, large programs keep interpretation fast.
INTERPRET_BLOCKS = {"direct": {"BLOCK_P": 64, "BLOCK_C": 64}, "gemm": {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32}}


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of one grouped convolution, validated."""

    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    groups: int
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def cin_g(self) -> int:
        return self.c_in // self.groups

    @property
    def cout_g(self) -> int:
        return self.c_out // self.groups

    @property
    def out_hw(self) -> tuple[int, int]:
        oh = (self.h + 2 * self.padding[0] - self.kh) // self.stride[0] + 1
        ow = (self.w + 2 * self.padding[1] - self.kw) // self.stride[1] + 1
        return oh, ow


def choose_path(cin_g: int) -> str:
    """Kernel for a group width: 'gemm' (tensor cores) for wide groups, 'direct' for narrow ones."""
    return "gemm" if cin_g >= GEMM_MIN_GROUP_WIDTH else "direct"


def output_like(x: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Empty output in the input's memory format (channels-last in -> channels-last out)."""
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if cl else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def launch(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    geo: ConvGeometry,
    scale: torch.Tensor | None = None,
    activation: str = "none",
    path: str = "auto",
    out: torch.Tensor | None = None,
    blocks: dict | None = None,
) -> torch.Tensor:
    """Run one grouped conv with Triton (already validated inputs); returns ``out``.

    ``path`` is 'auto' (by ``choose_path``), 'direct' or 'gemm'. ``blocks`` fixes the tile sizes
    (and disables autotuning on GPU); under the interpreter ``INTERPRET_BLOCKS`` are the default.
    ``out`` lets callers (tests) pass a pre-poisoned output to prove every element is written.
    """
    if not HAVE_TRITON:
        raise RuntimeError("Triton is not installed: pip install triton (or use the F.conv2d fallback)")
    oh, ow = geo.out_hw
    if out is None:
        out = output_like(x, (geo.n, geo.c_out, oh, ow))
    path = choose_path(geo.cin_g) if path == "auto" else path
    interp = interpret_enabled()
    if interp and blocks is None:
        blocks = INTERPRET_BLOCKS[path]
    mode = "interpret" if interp else ("jit" if blocks is not None else "tuned")
    kern = _kernel(path, mode)
    p = geo.n * oh * ow
    dummy = weight  # any valid pointer for absent bias / scale (never read: constexpr-guarded)
    args = (
        x, weight, bias if bias is not None else dummy, scale if scale is not None else dummy,
        geo.h, geo.w, geo.c_out, oh, ow, p, geo.cin_g, geo.cout_g,
        *x.stride(), *weight.stride(), *out.stride(),
        out,
    )  # fmt: skip
    consts = dict(
        STRIDE_H=geo.stride[0], STRIDE_W=geo.stride[1], PAD_H=geo.padding[0], PAD_W=geo.padding[1],
        KH=geo.kh, KW=geo.kw, HAS_BIAS=bias is not None, HAS_SCALE=scale is not None, ACT=ACTIVATIONS[activation],
    )  # fmt: skip
    if path == "gemm":
        consts["DOT_F32"] = interp and x.dtype == torch.bfloat16
        # fp32 follows PyTorch's cuDNN setting (TF32 by default); fp16/bf16 ignore the flag.
        exact_fp32 = x.dtype == torch.float32 and (interp or not torch.backends.cudnn.allow_tf32)
        consts["PRECISION"] = "ieee" if exact_fp32 else "tf32"
        tiles_n = lambda meta: geo.groups * triton.cdiv(geo.cout_g, meta["BLOCK_N"])
        grid = lambda meta: (triton.cdiv(p, meta["BLOCK_M"]), tiles_n(meta))
    else:
        grid = lambda meta: (triton.cdiv(p, meta["BLOCK_P"]), triton.cdiv(geo.c_out, meta["BLOCK_C"]))
    if blocks is not None:
        consts.update(blocks)
    if x.is_cuda:
        with torch.cuda.device(x.device):
            kern[grid](*args, **consts)
    else:
        kern[grid](*args, **consts)
    return out


_TRITON_DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_POINTERS = ("x_ptr", "w_ptr", "b_ptr", "s_ptr", "y_ptr")


def aot_compile(path: str, dtype: torch.dtype, constexprs: dict, arch: int | None = None, num_warps: int = 4,
                num_stages: int = 3):  # fmt: skip
    """Compile one kernel ahead of time (no GPU needed) for CUDA ``arch`` (e.g. 90), or the current GPU.

    ``constexprs`` must give every ``tl.constexpr`` parameter (strides/padding/kernel/epilogue and
    blocks). Returns Triton's compiled kernel (``.asm['ptx']``, ``.metadata.name``/``shared``):
    what the TensorRT AOT plugin embeds.
    """
    if not HAVE_TRITON:
        raise RuntimeError("Triton is not installed")
    fn = _kernel(path, "jit")
    ptr = "*" + _TRITON_DTYPES[dtype]
    signature = {}
    for name in fn.arg_names:
        if name in _POINTERS:
            signature[name] = ptr
        elif name in constexprs:
            signature[name] = "constexpr"
        else:
            signature[name] = "i32"
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    target = None
    if arch is not None:
        from triton.backends.compiler import GPUTarget

        target = GPUTarget("cuda", int(arch), 32)
    return triton.compile(src, target=target, options={"num_warps": num_warps, "num_stages": num_stages})


def kernel_param_count(path: str, constexprs: dict) -> int:
    """Number of runtime (non-constexpr) kernel parameters: 4 input pointers, scalars, 1 output."""
    return sum(1 for name in _kernel(path, "jit").arg_names if name not in constexprs)


def strip_trailing_params(ptx: str, kernel_name: str, keep: int) -> str:
    """Drop the kernel's parameters after the first ``keep`` from its PTX ``.entry`` (if unused).

    Recent Triton appends scratch-buffer pointers to every kernel; TensorRT's AOT plugins pass
    exactly (inputs, extra scalars, outputs). When the compiled kernel needs no scratch
    (``global_scratch_size == 0``) those pointers are never read, so removing them from the
    signature gives TensorRT the parameter list it launches with. Raises if one is referenced.
    """
    start = ptx.index(f".entry {kernel_name}(")
    end = ptx.index(")", start)
    lines = ptx[start:end].split("\n")
    params = [i for i, line in enumerate(lines) if ".param" in line]
    if len(params) <= keep:
        return ptx
    body = ptx[end:]
    for i in params[keep:]:
        pname = lines[i].strip().rstrip(",").split()[-1]
        if pname in body:
            raise ValueError(f"kernel parameter {pname} is used; cannot drop it for TensorRT")
    kept = lines[: params[keep - 1] + 1]
    kept[-1] = kept[-1].rstrip().rstrip(",")
    tail = lines[params[-1] + 1 :]
    return ptx[:start] + "\n".join(kept + tail) + ptx[end:]
