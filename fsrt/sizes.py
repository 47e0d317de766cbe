"""Sizes written by people: counts such as ``400M`` or ``4GF`` and memory sizes such as ``4G``.

The same suffix means two things, so there are two explicit parsers and every option says
which one it uses, in its help and in its errors:

- ``parse_count``: **decimal** units for counts (flops, params): ``4G`` = 4e9, ``400M`` = 4e8,
  an optional ``F``/``FLOPS`` after the suffix (``4GF``), or plain numbers such as ``1.6e9``.
- ``parse_bytes``: **binary** units for memory (TensorRT's workspace): ``4G`` = ``4GiB`` =
  4 * 2**30 bytes, ``512M`` = 512 * 2**20, or a plain byte count.

``human`` prints a count back in decimal units with three significant figures.
"""

from __future__ import annotations

import re

from fsrt.errors import FsrtError

_DECIMAL = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGBT]?)(?:F|FLOPS?)?\s*$", re.I)
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*$", re.I)
COUNT_UNITS = "decimal units: 1K = 1000, 1G = 10^9"
BYTES_UNITS = "binary units: 1K = 1024 bytes, 1G = 1GiB = 2^30 bytes"


def parse_count(text: str | int | float, what: str = "count") -> float:
    """A positive count with an optional decimal suffix K, M, G/B, T (optionally followed by F).

    ``400M`` -> 4e8, ``4GF`` -> 4e9, ``1.6e9`` -> 1.6e9. Raises ``FsrtError`` naming ``what`` otherwise.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _COUNT_RE.match(str(text))
        if not m:
            raise FsrtError(f"cannot read {what} {text!r}: use a number with an optional suffix K, M, G or T "
                            f"({COUNT_UNITS}; e.g. 400M, 4G, 4GF)")
        value = float(m.group(1)) * _DECIMAL[m.group(2).upper()]
    if value <= 0:
        raise FsrtError(f"{what} must be positive, got {text!r}")
    return value


def parse_bytes(text: str | int, what: str = "size") -> int:
    """A positive memory size in bytes: ``4G`` / ``4GiB`` / ``512M`` (binary units) or plain bytes."""
    if isinstance(text, int):
        value = text
    else:
        m = _BYTES_RE.match(str(text))
        if not m:
            raise FsrtError(f"cannot read {what} {text!r} as a memory size: use e.g. 512M, 4G or 4GiB ({BYTES_UNITS})")
        value = int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    if value <= 0:
        raise FsrtError(f"{what} must be positive, got {text!r}")
    return value


def human(n: float, unit: str = "") -> str:
    """Format a count compactly with three significant figures in decimal units (``3.97G``, ``401M``)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"
