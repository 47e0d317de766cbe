"""Sweep grammar shared by ``fsrt scaling`` and ``fsrt bench``.

A sweep names one variable and its values:

- ``s=1..32``      geometric, doubling from 1 up to 32 inclusive: 1, 2, 4, 8, 16, 32
- ``s=1..32x1.5``  geometric with ratio 1.5 (stops at the last value not above 32)
- ``s=1,3,9``      an explicit list
- ``alpha=0.33,0.8,1``

Values are floats; range checks that depend on the variable (s > 0, alpha in [0, 1]) are the
caller's job. Malformed or empty input raises ``FsrtError`` with a one-line explanation.
"""

from __future__ import annotations

import math
import re

from fsrt.errors import FsrtError

MAX_POINTS = 1000
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GRAMMAR = "use NAME=A..B (doubling), NAME=A..BxR (ratio R), or NAME=V1,V2,... (e.g. s=1..32, s=1,3,9)"


def _number(text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise FsrtError(f"cannot read {what} {text.strip()!r} as a number") from None
    if not math.isfinite(value):
        raise FsrtError(f"{what} must be a finite number, got {text.strip()!r}")
    return value


def parse_float_list(text: str, what: str = "value list") -> list[float]:
    """Parse ``"0.33,0.8,1"`` into ``[0.33, 0.8, 1.0]``.

    Empty input, empty items (``"1,,2"``) and non-numbers raise ``FsrtError`` naming ``what``.
    """
    if text is None or not str(text).strip():
        raise FsrtError(f"{what} is empty: give comma-separated numbers such as 0.33,0.8,1")
    items = str(text).split(",")
    if any(not item.strip() for item in items):
        raise FsrtError(f"{what} {text!r} has an empty item: give comma-separated numbers such as 0.33,0.8,1")
    return [_number(item, f"{what} item") for item in items]


def geometric(start: float, end: float, ratio: float = 2.0) -> list[float]:
    """``start, start*ratio, ...`` up to ``end`` inclusive (a relative 1e-9 slack absorbs float error)."""
    if start <= 0 or end <= 0:
        raise FsrtError(f"a geometric range needs positive bounds, got {start:g}..{end:g}")
    if end < start:
        raise FsrtError(f"range {start:g}..{end:g} is empty: the end must not be below the start")
    if ratio <= 1:
        raise FsrtError(f"range ratio must be > 1, got {ratio:g}")
    n = int(math.floor(math.log(end / start) / math.log(ratio) + 1e-9)) + 1
    if n > MAX_POINTS:
        raise FsrtError(f"range {start:g}..{end:g}x{ratio:g} has {n} points; at most {MAX_POINTS} are allowed")
    return [start * ratio**i for i in range(n)]


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """Parse a sweep ``NAME=SPEC`` into ``(name, values)``.

    ``"s=1..32"`` -> ``("s", [1, 2, 4, 8, 16, 32])``; ``"s=1..32x1.5"`` uses ratio 1.5;
    ``"s=1,3,9"`` and ``"alpha=0.33,0.8,1"`` are lists. Raises ``FsrtError`` on malformed or empty input.
    """
    if text is None or not str(text).strip():
        raise FsrtError(f"sweep is empty: {GRAMMAR}")
    text = str(text).strip()
    name, sep, body = text.partition("=")
    name, body = name.strip(), body.strip()
    if not sep or not _NAME_RE.match(name):
        raise FsrtError(f"cannot read sweep {text!r}: {GRAMMAR}")
    if not body:
        raise FsrtError(f"sweep {text!r} has no values: {GRAMMAR}")
    if ".." in body:
        parts = body.split("..")
        tail = parts[-1].split("x")
        if len(parts) != 2 or len(tail) > 2 or not parts[0].strip() or not all(t.strip() for t in tail):
            raise FsrtError(f"cannot read sweep range {body!r}: {GRAMMAR}")
        start = _number(parts[0], f"sweep {name} start")
        end = _number(tail[0], f"sweep {name} end")
        ratio = _number(tail[1], f"sweep {name} ratio") if len(tail) == 2 else 2.0
        return name, geometric(start, end, ratio)
    return name, parse_float_list(body, f"sweep {name}")
