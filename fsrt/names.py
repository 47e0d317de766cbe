"""File-name-safe tokens made from free text (model names, run names, GPU names)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, fallback: str = "unknown") -> str:
    """``text`` as one file-name token: each run of characters other than letters, digits, ``.``,
    ``_`` and ``-`` becomes ``-``; leading and trailing ``.``, ``_`` and ``-`` are dropped (no
    hidden files, no ``..``). Case is kept (lower it first where the name should not depend on
    it). ``fallback`` when nothing is left."""
    return _UNSAFE.sub("-", str(text)).strip("._-") or fallback
