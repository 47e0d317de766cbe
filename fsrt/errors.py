"""User-facing error types.

The CLI turns ``FsrtError`` into a one-line ``error: ...`` message with exit code 2 (bad
input), and ``CheckFailed`` into exit code 1 (a check such as parity ran and failed).
Library code raises these instead of printing, so notebooks get ordinary exceptions.
"""

from __future__ import annotations


class FsrtError(Exception):
    """Bad input or missing prerequisite: the message says what is wrong and what to do."""

    exit_code = 2


class CheckFailed(FsrtError):
    """A check ran to completion and failed (for example an output-parity check)."""

    exit_code = 1


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty:
    third-party errors often span many lines, and fsrt reports one."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
