"""fsrt.kernels: Triton grouped conv under TRITON_INTERPRET=1 (CPU) against a float64 F.conv2d oracle.

TRITON_INTERPRET is set per test with monkeypatch (restored afterwards, so other test files in
the same xdist worker are unaffected); fsrt.kernels reads it at call time.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from fsrt.kernels import KernelInputError, group_conv2d, triton_available, triton_group_conv2d  # noqa: E402

# Round-off of one output element in each dtype (half an ulp, relative). Triton's interpreter
# truncates fp32 -> bf16 (GPUs round to nearest), so bf16 gets a full ulp here.
OUT_REL = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-7}


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert triton_available("cpu")


def _inputs(n, cin, cout, groups, h, w, k, dtype, seed, channels_last=False, epilogue=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g).to(dtype)
    weight = torch.randn(cout, cin // groups, k, k, generator=g).to(dtype)
    bias = torch.randn(cout, generator=g).to(dtype) if epilogue else None
    scale = (torch.rand(cout, generator=g) + 0.5).to(dtype) if epilogue else None
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x, weight, bias, scale


def _oracle(x, weight, bias, scale, stride, padding, groups, act):
    """float64 reference and an error bound: |y - ref| <= rel * |ref| + 1e-5 * sum|x||w|*|scale| + ..."""
    d = lambda t: None if t is None else t.double()
    ref = F.conv2d(x.double(), weight.double(), None, stride, padding, 1, groups)
    mag = F.conv2d(x.double().abs(), weight.double().abs(), None, stride, padding, 1, groups)
    if scale is not None:
        ref = ref * d(scale).view(1, -1, 1, 1)
        mag = mag * d(scale).abs().view(1, -1, 1, 1)
    if bias is not None:
        ref = ref + d(bias).view(1, -1, 1, 1)
        mag = mag + d(bias).abs().view(1, -1, 1, 1)
    if act == "relu":
        ref = torch.relu(ref)
    elif act == "silu":
        ref = F.silu(ref)
    return ref, mag


def _check(y, x, weight, bias, scale, stride, padding, groups, act):
    ref, mag = _oracle(x, weight, bias, scale, stride, padding, groups, act)
    assert y.shape == ref.shape and y.dtype == x.dtype
    assert not torch.isnan(y).any(), "some outputs were never written (still poisoned)"
    err = (y.double() - ref).abs()
    tol = OUT_REL[x.dtype] * ref.abs() + 1e-5 * mag + 1e-12
    worst = (err / tol).max().item()
    assert worst <= 1.0, f"max err {err.max().item():.3e} exceeds bound by {worst:.2f}x"


# (n, cin, cout, groups, h, w, k, stride, pad, dtype, channels_last, path, act, blocks)
f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
CASES = [
    (2, 6, 6, 6, 5, 7, 3, 1, 1, f32, False, "auto", "none", None),  # depthwise, odd sizes
    (1, 8, 8, 8, 9, 9, 5, 2, 2, f16, True, "auto", "silu", None),  # depthwise k5 s2, channels-last
    (1, 4, 8, 4, 5, 7, 3, 1, 1, f32, False, "auto", "relu", None),  # depth multiplier 2 (cout_g = 2)
    (2, 6, 6, 3, 5, 7, 3, 2, 1, bf16, False, "auto", "silu", None),  # group width 2, stride 2, bf16
    (2, 12, 12, 3, 7, 9, 3, 2, 1, f32, False, "direct", "relu", {"BLOCK_P": 8, "BLOCK_C": 4}),  # many tiles
    (1, 16, 16, 2, 9, 9, 3, 1, 1, f16, True, "direct", "none", None),  # width 8 direct, CL
    (1, 16, 16, 2, 5, 7, 3, 2, 1, f32, False, "gemm", "relu", None),  # width 8 on the GEMM (K padding)
    (2, 32, 32, 2, 5, 7, 3, 1, 1, f16, True, "auto", "silu", None),  # width 16 -> gemm
    (1, 48, 48, 2, 5, 7, 3, 2, 1, f32, False, "auto", "none", None),  # width 24: partial K tile
    (1, 48, 48, 2, 5, 7, 3, 2, 1, f32, True, "gemm", "relu", {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}),
    (1, 64, 96, 2, 5, 7, 3, 1, 1, f32, False, "auto", "relu", None),  # cout_g 48 != cin_g 32
    (1, 64, 64, 1, 5, 5, 5, 1, 2, bf16, False, "auto", "none", None),  # dense (groups=1) k5, bf16
    (1, 128, 128, 1, 5, 5, 3, 2, 1, f16, True, "auto", "relu", None),  # width 128, stride 2
    (2, 16, 16, 4, 7, 5, 3, 2, 1, f16, True, "auto", "relu", None),  # width 4, channels-last
    (1, 64, 64, 2, 5, 5, 3, 1, 1, f32, True, "direct", "silu", None),  # width 32 forced onto direct
    (2, 128, 128, 2, 5, 7, 5, 2, 2, f16, True, "auto", "silu", None),  # width 64, k5 s2 -> gemm
    (1, 24, 24, 1, 6, 6, 3, 1, 1, f32, False, "direct", "none", None),  # dense on direct
    (1, 8, 8, 2, 5, 7, 3, 1, 0, f32, False, "auto", "none", None),  # no padding
    (1, 8, 8, 2, 5, 5, 3, 2, 2, f16, False, "direct", "none", None),  # padding > k//2
]


@pytest.mark.parametrize("case", CASES, ids=[f"c{i}" for i in range(len(CASES))])
def test_kernel_matches_float64_conv(interpret, case):
    n, cin, cout, groups, h, w, k, stride, pad, dtype, cl, path, act, blocks = case
    x, weight, bias, scale = _inputs(n, cin, cout, groups, h, w, k, dtype, seed=len(CASES) + cin + h, channels_last=cl)
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    fmt = torch.channels_last if cl else torch.contiguous_format
    out = torch.full((n, cout, oh, ow), float("nan"), dtype=dtype).to(memory_format=fmt)
    y = triton_group_conv2d(x, weight, bias, stride, pad, groups, scale=scale, activation=act, path=path, out=out,
                            blocks=blocks)  # fmt: skip
    assert y is out
    _check(y, x, weight, bias, (scale), (stride, stride), (pad, pad), groups, act)


def test_kernel_plain_conv_no_epilogue_and_strided_input(interpret):
    """No bias/scale/act, and an input that is a non-contiguous slice (explicit strides)."""
    x, weight, _, _ = _inputs(1, 16, 16, 4, 9, 11, 3, f32, seed=3, epilogue=False)
    x = x[:, :, 1:8, 2:9]
    assert not x.is_contiguous()
    for path in ("direct", "gemm"):
        out = torch.full((1, 16, 7, 7), float("nan"))
        triton_group_conv2d(x, weight, None, 1, 1, 4, path=path, out=out)
        _check(out, x, weight, None, None, (1, 1), (1, 1), 4, "none")


def test_output_keeps_memory_format(interpret):
    x, weight, bias, _ = _inputs(1, 8, 8, 8, 5, 6, 3, f32, seed=4, channels_last=True)
    y = triton_group_conv2d(x, weight, bias, 1, 1, 8)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    y = triton_group_conv2d(x.contiguous(), weight, bias, 1, 1, 8)
    assert y.is_contiguous()


def test_custom_op_uses_triton_when_interpreting(interpret, monkeypatch):
    """group_conv2d goes through torch.ops.fsrt.group_conv2d and launches the Triton kernel."""
    from fsrt.kernels import group_conv

    launched = []
    real = group_conv.launch
    monkeypatch.setattr(group_conv, "launch", lambda *a, **k: launched.append(1) or real(*a, **k))
    x, weight, bias, scale = _inputs(2, 12, 12, 3, 5, 7, 3, f32, seed=5)
    y = group_conv2d(x, weight, bias, 2, 1, 3, scale=scale, activation="silu")
    assert launched == [1]
    _check(y, x, weight, bias, scale, (2, 2), (1, 1), 3, "silu")


def test_custom_op_falls_back_to_conv2d_without_triton_backend(monkeypatch):
    """Not interpreting and no GPU: the op computes with F.conv2d, same result, same memory format."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not triton_available("cpu")
    x, weight, bias, scale = _inputs(2, 16, 16, 4, 6, 5, 3, f32, seed=6, channels_last=True)
    y = group_conv2d(x, weight, bias, 1, "same", 4, scale=scale, activation="relu")
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = torch.relu(F.conv2d(x, weight, None, 1, 1, 1, 4) * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1))
    torch.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)


def test_fake_impl_agrees_with_real_impl(monkeypatch):
    """torch.library.opcheck: schema, fake-tensor shapes/strides (incl. channels-last) and dispatch."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, weight, bias, scale = _inputs(2, 8, 8, 4, 5, 7, 3, f32, seed=7, channels_last=True)
    op = torch.ops.fsrt.group_conv2d.default
    calls = [(x, weight, bias, [2, 2], [1, 1], 4, scale, "relu"), (x.contiguous(), weight, None, [1, 1], [0, 0], 4)]
    for args in calls:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dilation=2), "dilation"),
        (dict(groups=3), "divisible by groups"),
        (dict(groups=2, weight_groups=4), "input channels per group"),
        (dict(activation="gelu"), "activation"),
        (dict(padding="same", stride=2), "same"),
        (dict(padding="reflect"), "padding"),
        (dict(stride=0), "stride"),
        (dict(bias_len=5), "bias"),
        (dict(dtype_w=torch.float16), "dtype"),
        (dict(h=1), "smaller than"),
    ],
)
def test_bad_input_gives_clear_error(kwargs, match):
    groups = kwargs.get("groups", 4)
    x = torch.randn(1, 8, kwargs.get("h", 6), 6)
    weight = torch.randn(8, 8 // kwargs.get("weight_groups", groups if 8 % groups == 0 else 4), 3, 3)
    weight = weight.to(kwargs.get("dtype_w", torch.float32))
    bias = torch.randn(kwargs["bias_len"]) if "bias_len" in kwargs else None
    with pytest.raises(KernelInputError, match=match):
        group_conv2d(x, weight, bias, kwargs.get("stride", 1), kwargs.get("padding", 1 if "h" not in kwargs else 0),
                     groups, activation=kwargs.get("activation"), dilation=kwargs.get("dilation", 1))  # fmt: skip


def test_triton_entry_refuses_without_backend(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(KernelInputError, match="Triton cannot run"):
        triton_group_conv2d(torch.randn(1, 4, 5, 5), torch.randn(4, 1, 3, 3), None, 1, 1, 4)
