"""Helpers shared by CLI commands: JSON output, rich console, model/size arguments."""

from __future__ import annotations

import json
import sys

import click

from fsrt.errors import FsrtError

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON document to stdout and nothing else there.")


def console():
    """A rich console on stdout; when piped it is wide enough that tables are never truncated."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def err_console():
    """A rich console on stderr, for progress and notes that must not pollute --json output."""
    from rich.console import Console

    return Console(stderr=True)


def print_json(doc) -> None:
    """Write ``doc`` as one JSON document to stdout."""
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def positive_int(what: str):
    """A click callback rejecting non-positive integers with a one-line error."""

    def check(ctx, param, value):
        if value is not None and value <= 0:
            raise FsrtError(f"{what} must be a positive integer, got {value}")
        return value

    return check


def resolution_px(what: str):
    """A click callback rejecting input sizes below the smallest every network takes (8 px)."""
    from fsrt.spec import MIN_RESOLUTION

    def check(ctx, param, value):
        if value is not None and value < MIN_RESOLUTION:
            raise FsrtError(f"{what} must be at least {MIN_RESOLUTION} pixels, got {value}")
        return value

    return check


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), the bound for --threads."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
