"""Parsing and printing of human sizes such as ``400M``, ``4G``, ``4GF`` or ``1.6e9``."""

from __future__ import annotations

import re

from fsrt.errors import FsrtError

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGBT]?)(?:F|FLOPS?)?\s*$", re.I)


def parse_size(text: str | int | float, what: str = "size") -> float:
    """Parse a size with an optional decimal suffix (K, M, G/B, T, optionally followed by F).

    ``400M`` -> 4e8, ``4GF`` -> 4e9, ``1.6e9`` -> 1.6e9. Raises ``FsrtError`` on anything else.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise FsrtError(f"cannot read {what} {text!r}: use a number with an optional "
                            "suffix K, M, G or T (e.g. 400M, 4G, 4GF)")
        value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if value <= 0:
        raise FsrtError(f"{what} must be positive, got {text!r}")
    return value


def human(n: float, unit: str = "") -> str:
    """Format a count compactly with three significant figures (``3.97G``, ``401M``)."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"
