"""Built modules: output shapes, parameter counts, pycls init, and block wiring checked against a
functional second implementation written here with torch.nn.functional."""

import math

import pytest
import torch
import torch.nn.functional as F

from fsrt.complexity import complexity
from fsrt.models import build_model
from fsrt.models.blocks import Bottleneck, MBConv
from fsrt.spec import StageSpec
from fsrt.zoo import zoo_names, zoo_spec


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_model_forward_shape_and_params(name):
    # The real module code runs on meta tensors: shapes and parameters without the cost of
    # initializing 2.3 billion weights; numerics are covered by the per-family test below.
    spec = zoo_spec(name)
    model = build_model(spec, device="meta").eval()
    assert sum(p.numel() for p in model.parameters()) == complexity(spec).params
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64, device="meta"))
    assert out.shape == (2, 1000)


FAMILY_REPRESENTATIVES = ["RegNetX-200MF", "RegNetY-400MF", "RegNetZ-500MF", "EfficientNet-B0", "ResNet-50",
                          "ResNeXt-50-32x4d", "ResNet-RS-50"]


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_family_representatives_run_for_real_at_64px(name):
    spec = zoo_spec(name)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    assert sum(p.numel() for p in model.parameters()) == complexity(spec).params
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()
    # different images give different logits (relative: EfficientNet's logits at init are ~1e-14)
    assert (out[0] - out[1]).abs().max() > 1e-3 * out.abs().max() > 0


def _bn(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _conv_bn(x, cb, stride=1, groups=1):
    conv = cb[0]
    return _bn(F.conv2d(x, conv.weight, None, stride, conv.kernel_size[0] // 2, 1, groups), cb[1])


def _se(x, se, act):
    s = x.mean((2, 3), keepdim=True)
    s = act(F.conv2d(s, se.reduce.weight, se.reduce.bias))
    return x * torch.sigmoid(F.conv2d(s, se.expand.weight, se.expand.bias))


def reference_bottleneck(x, blk: Bottleneck, st: StageSpec, w_in: int, stride: int):
    """Bottleneck written from docs/architecture.md ("Blocks"), reading the module's parameters by role."""
    act = F.relu if st.activation == "relu" else F.silu
    w_b = round(st.width * st.bot_mul)
    f = act(_conv_bn(x, blk.a))
    f = act(_conv_bn(f, blk.b, stride, groups=w_b // st.group_w))
    if st.block in ("y", "z"):
        assert blk.se.reduce.out_channels == round(st.se_r * w_in)  # SE sized from the block input width
        f = _se(f, blk.se, act)
    f = _conv_bn(f, blk.c)
    if st.block == "rs":
        assert blk.se_out.reduce.out_channels == round(st.se_r * st.width)
        f = _se(f, blk.se_out, act)
    shapes_change = w_in != st.width or stride != 1
    if st.block == "z":
        return f if shapes_change else x + f  # linear: no activation after the add either
    if shapes_change:
        if st.shortcut == "avgpool" and stride > 1:
            skip = F.avg_pool2d(x, 2, stride, ceil_mode=True, count_include_pad=False)
            skip = _conv_bn(skip, blk.shortcut.proj)
        else:
            skip = _conv_bn(x, blk.shortcut.proj, stride)
    else:
        skip = x
    return act(skip + f)


def reference_mbconv(x, blk: MBConv, st: StageSpec, w_in: int, stride: int):
    w_exp = int(w_in * st.exp_r)
    f = F.silu(_conv_bn(x, blk.expand)) if w_exp != w_in else x
    f = F.silu(_conv_bn(f, blk.dwise, stride, groups=w_exp))
    assert blk.se.reduce.out_channels == int(st.se_r * w_in)
    f = _conv_bn(_se(f, blk.se, F.silu), blk.project)
    return x + f if stride == 1 and w_in == st.width else f


def _randomize_bn(module):
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=g) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=g) * 0.1
            m.running_var = torch.rand(m.num_features, generator=g) + 0.5


BLOCK_CASES = [
    (StageSpec(2, 48, 2, "x", bot_mul=1.0, group_w=8), 32, 2),
    (StageSpec(2, 48, 1, "y", bot_mul=1.0, group_w=8, se_r=0.25), 48, 1),
    (StageSpec(2, 56, 2, "y", bot_mul=1.0, group_w=8, se_r=0.25), 24, 2),
    (StageSpec(2, 32, 2, "z", bot_mul=4.0, group_w=8, se_r=0.25, activation="silu"), 16, 2),
    (StageSpec(2, 32, 1, "z", bot_mul=4.0, group_w=8, se_r=0.25, activation="silu"), 32, 1),
    (StageSpec(2, 64, 2, "rs", bot_mul=0.25, group_w=16, se_r=0.25, shortcut="avgpool"), 32, 2),
    (StageSpec(2, 64, 1, "rs", bot_mul=0.25, group_w=16, se_r=0.25, shortcut="avgpool"), 32, 1),
]


@pytest.mark.parametrize("st, w_in, stride", BLOCK_CASES)
def test_bottleneck_matches_functional_reference(st, w_in, stride):
    torch.manual_seed(0)
    blk = Bottleneck(st, w_in, stride).double().eval()
    _randomize_bn(blk)
    blk.double()
    x = torch.randn(2, w_in, 11, 13, dtype=torch.float64)  # odd sizes exercise padding and ceil-mode pooling
    with torch.no_grad():
        torch.testing.assert_close(blk(x), reference_bottleneck(x, blk, st, w_in, stride), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("w_in, width, stride, exp_r, k",
                         [(16, 16, 1, 6.0, 3), (16, 24, 2, 6.0, 5), (32, 16, 1, 1.0, 3)])
def test_mbconv_matches_functional_reference(w_in, width, stride, exp_r, k):
    st = StageSpec(1, width, stride, "mbconv", kernel=k, exp_r=exp_r, se_r=0.25, activation="silu")
    torch.manual_seed(0)
    blk = MBConv(st, w_in, stride).double().eval()
    _randomize_bn(blk)
    blk.double()
    x = torch.randn(2, w_in, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(blk(x), reference_mbconv(x, blk, st, w_in, stride), rtol=1e-10, atol=1e-10)


def test_pycls_init_statistics():
    torch.manual_seed(0)
    model = build_model(zoo_spec("RegNetX-400MF"))
    conv = model.stages[3][1].c[0]  # 1x1 conv 384 -> 384
    expected_std = math.sqrt(2.0 / (1 * 1 * conv.out_channels))
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.02
    assert abs(conv.weight.mean().item()) < 0.01 * expected_std * 10
    assert abs(model.head.fc.weight.std().item() / 0.01 - 1) < 0.02
    assert torch.count_nonzero(model.head.fc.bias) == 0
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


def test_zero_init_last_bn_only_on_residual_branches():
    model = build_model(zoo_spec("RegNetZ-500MF"), zero_init_last_bn=True)
    for stage in model.stages:
        for blk in stage:
            gamma = blk.last_bn().weight
            assert torch.all(gamma == 0) if blk.has_residual else torch.all(gamma == 1)


def test_drop_path_is_identity_in_eval_and_drops_samples_in_training():
    spec = zoo_spec("ResNet-RS-50").replace(drop_path=0.5, resolution=64)
    torch.manual_seed(0)
    model = build_model(spec)
    x = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b)
    last = model.stages[-1][-1]
    assert last.drop_path.rate == pytest.approx(0.5)  # linear in block index, full rate on the last block
    assert model.stages[0][0].drop_path.__class__.__name__ == "Identity"  # first block: rate 0
    last.train()
    f = torch.ones(1000, 1, 1, 1)
    kept = (last.drop_path(f) != 0).float().mean().item()
    assert 0.4 < kept < 0.6
