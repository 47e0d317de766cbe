"""Sweep grammar shared by ``fsrt scaling`` and ``fsrt bench``: values written out by hand."""

from __future__ import annotations

import pytest

from fsrt.errors import FsrtError
from fsrt.sweep import parse_float_list, parse_sweep


def test_doubling_range():
    assert parse_sweep("s=1..32") == ("s", [1, 2, 4, 8, 16, 32])
    assert parse_sweep("s=2..8") == ("s", [2, 4, 8])
    assert parse_sweep("s=1..40") == ("s", [1, 2, 4, 8, 16, 32])  # stops at the last value not above the end


def test_ratio_range():
    name, values = parse_sweep("s=1..32x1.5")
    assert name == "s"
    expected = [1, 1.5, 2.25, 3.375, 5.0625, 7.59375, 11.390625, 17.0859375, 25.62890625]
    assert values == pytest.approx(expected, rel=1e-12)
    assert parse_sweep("s=1..27x3")[1] == pytest.approx([1, 3, 9, 27])  # end hit exactly despite float error


def test_lists_and_single_values():
    assert parse_sweep("s=1,3,9") == ("s", [1, 3, 9])
    assert parse_sweep("alpha=0.33,0.8,1") == ("alpha", [0.33, 0.8, 1.0])
    assert parse_sweep("s=4") == ("s", [4])
    assert parse_sweep(" s = 1 .. 4 ") == ("s", [1, 2, 4])
    assert parse_float_list("0.33,0.8,1", "alpha") == [0.33, 0.8, 1.0]
    assert parse_float_list("1e-1", "x") == [0.1]


@pytest.mark.parametrize("text", ["", "   ", "s", "s=", "=1..4", "1..4", "s=1..", "s=..4", "s=1..4x", "s=1..2..3",
                                  "s=a..4", "s=1,,2", "s=1,", "s=abc", "s=1..4x1", "s=1..4x0.5", "s=0..4", "s=-1..4",
                                  "s=8..4", "s=nan", "s=inf", "s=1..1e9x1.0001", "2s=1"])
def test_malformed_sweeps_raise(text):
    with pytest.raises(FsrtError):
        parse_sweep(text)


@pytest.mark.parametrize("text", ["", ",", "1,,2", "x", "1;2"])
def test_malformed_lists_raise(text):
    with pytest.raises(FsrtError, match="alpha"):
        parse_float_list(text, "alpha")
