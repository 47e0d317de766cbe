"""Design-space samplers, error EDF and the bootstrap of the best model, on worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fsrt.design_space import (
    ANYNET_SPACES,
    bootstrap_best,
    canonical_space,
    edf_curve,
    error_edf,
    log_uniform_int,
    sample_anynet,
    sample_band,
    sample_regnet,
)
from fsrt.errors import FsrtError
from fsrt.regnet import is_valid_regnet, regnet_block_widths


def records(result):
    return [s.to_dict() for s in result.samples]


@pytest.mark.parametrize("space", ["regnetx", "anynetx_a"])
def test_band_sampling_is_reproducible_under_a_seed(space):
    a = sample_band(space, 6, 360e6, 400e6, seed=3)
    b = sample_band(space, 6, 360e6, 400e6, seed=3)
    c = sample_band(space, 6, 360e6, 400e6, seed=4)
    assert records(a) == records(b) and a.draws == b.draws
    assert [r["params_space"] for r in records(a)] != [r["params_space"] for r in records(c)]
    assert len(a.samples) == 6
    for s in a.samples:
        assert 360e6 <= s.cx.flops <= 400e6


def test_regnet_samples_are_valid_four_stage_regnets_in_range():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p, spec = sample_regnet(rng, "regnet")
        assert 1 <= p["d"] < 64 and 8 <= p["w0"] < 256 and p["w0"] % 8 == 0
        assert 0 < p["wa"] < 256 and 1.5 <= p["wm"] <= 3
        assert p["b"] in (1, 2, 4) and p["g"] in (1, 2, 4, 8, 16, 32)
        assert is_valid_regnet(p["d"], p["w0"], p["wa"], p["wm"])
        assert regnet_block_widths(p["d"], p["w0"], p["wa"], p["wm"])[1] == 4
        assert len(spec.stages) == 4 and spec.depth == p["d"]
        for st in spec.stages:  # block compatibility: g divides the bottleneck width
            assert st.bottleneck_width % st.group_w == 0
            assert st.bot_mul == 1 / p["b"]
    _, spec = sample_regnet(np.random.default_rng(0), "regnety")
    assert all(st.block == "y" and st.se_r == 0.25 for st in spec.stages)


def test_anynet_space_constraints():
    rng = np.random.default_rng(1)
    for space in ANYNET_SPACES:
        for _ in range(150):
            p, spec = sample_anynet(rng, space)
            ds, ws, bs, gs = p["ds"], p["ws"], p["bs"], p["gs"]
            assert all(1 <= d <= 16 for d in ds) and all(8 <= w <= 1024 and w % 8 == 0 for w in ws)
            assert set(bs) <= {1, 2, 4} and set(gs) <= {1, 2, 4, 8, 16, 32}
            level = ANYNET_SPACES.index(space)
            assert (len(set(bs)) == 1) or level < 1
            assert (len(set(gs)) == 1) or level < 2
            assert ws == sorted(ws) or level < 3
            assert ds == sorted(ds) or level < 4
            assert [st.depth for st in spec.stages] == ds
            assert all(st.bottleneck_width % st.group_w == 0 for st in spec.stages)


def test_log_uniform_has_the_log_median():
    # log-uniform on [8, 1024]: P(w <= sqrt(8*1024) = 90.5) = 1/2 (rounding up to 8 shifts it little)
    rng = np.random.default_rng(0)
    draws = [log_uniform_int(rng, 8, 1024, 8) for _ in range(4000)]
    assert min(draws) == 8 and max(draws) <= 1024 and all(w % 8 == 0 for w in draws)
    frac = sum(w <= 88 for w in draws) / len(draws)
    expected = (math.log(88) - math.log(4)) / (math.log(1024) - math.log(4))  # (low - q/2 .. 88] in log measure
    assert frac == pytest.approx(expected, abs=0.03)


def test_unreachable_band_gives_up_after_bounded_draws():
    with pytest.raises(FsrtError, match=r"gave up after 300 draws.*only 0 of 4"):
        sample_band("regnetx", 4, 1, 2, seed=0, max_draws=300)
    with pytest.raises(FsrtError, match="band"):
        sample_band("regnetx", 4, 5e8, 4e8)
    with pytest.raises(FsrtError, match="unknown design space"):
        canonical_space("anynetx_z")


def test_error_edf_worked_example():
    errors = [30.0, 20.0, 20.0, 40.0]  # F(e) = fraction strictly below e
    assert error_edf(errors, [10, 20, 25, 30, 35, 40, 50]) == [0, 0, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert error_edf(errors, 20.5) == 0.5
    xs, fs = edf_curve(errors)
    assert xs == [20, 20, 30, 40] and fs == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(FsrtError):
        error_edf([], [1])


def test_bootstrap_best_against_exact_distribution():
    # n = 8 models, ranked by error; 25% -> 2 draws with replacement. The best of 2 draws is rank k
    # with probability ((9-k)^2 - (8-k)^2) / 64 = (17 - 2k)/64: cumulative 15, 28, 39, 48, 55, 60, 63, 64 (/64).
    # So the median is rank 3 (28/64 < 1/2 < 39/64), 2.5% is rank 1 (15/64 > 0.025),
    # and 97.5% is rank 7 (60/64 < 0.975 < 63/64).
    errors = [10, 11, 12, 13, 14, 15, 16, 17]
    values = [100, 200, 300, 400, 500, 600, 700, 800]  # value of rank k is 100*k
    order = [5, 2, 7, 0, 3, 6, 1, 4]  # shuffle the pairs: the pairing, not the order, matters
    res = bootstrap_best([values[i] for i in order], [errors[i] for i in order], reps=10_000, seed=0)
    assert res.sample_size == 2 and res.reps == 10_000
    assert (res.lo, res.median, res.hi) == (100, 300, 700)
    again = bootstrap_best([values[i] for i in order], [errors[i] for i in order], reps=10_000, seed=0)
    assert again == res


def test_bootstrap_degenerate_cases():
    # all values equal -> a point interval; one model -> that model
    assert bootstrap_best([5, 5, 5, 5], [1, 2, 3, 4], reps=100).to_dict()["lo"] == 5
    r = bootstrap_best([7.0], [0.3], reps=50)
    assert (r.lo, r.median, r.hi) == (7.0, 7.0, 7.0)
    with pytest.raises(FsrtError):
        bootstrap_best([1, 2], [1], reps=10)
