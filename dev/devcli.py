"""The command-line convention every developer speed script in ``dev/`` follows.

Each script runs from the repository root as ``python dev/<name>.py`` (with fsrt installed, e.g.
``make install``) and takes:

- ``--quick``: the smoke setting (tiny models, short timing windows, seconds in all); the tests
  run every script this way, so the figures it prints check that the script works, not speed.
- ``--json``: print one JSON document to stdout and nothing else there (progress goes to stderr).

Timing goes through fsrt's own harness, ``fsrt.bench.timing``: ``best_of`` for throughput
probes (the shortest of a few repeats is the figure) and ``measure`` for latencies (warm-up and
measurement by time and count, median and p90). ``main(argv)`` returns the exit status, so a
test can call it in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def parser(doc: str, out: bool = False) -> argparse.ArgumentParser:
    """An argument parser with the shared options; the script's docstring is its help text. With
    ``out``, also ``--out FILE``: where ``emit`` keeps the JSON document (for scripts whose figures
    come from a machine the reader is not on)."""
    first, _, rest = doc.strip().partition("\n")
    ap = argparse.ArgumentParser(description=first, epilog=rest.strip() or None,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke setting: tiny sizes and short timing (seconds; checks the script, not speed)")
    ap.add_argument("--json", action="store_true", help="print one JSON document to stdout and nothing else there")
    if out:
        ap.add_argument("--out", default=None, help="also write the JSON document to this file (atomically)")
    return ap


def emit(figures: dict, as_json: bool, print_text: Callable[[dict], None], out: str | None = None) -> None:
    """Print ``figures`` as one JSON document, or as the script's text report; with ``out``, first
    write the JSON document there (atomically: an interrupted run leaves no half file)."""
    if out:
        from fsrt.io import atomic_write_text

        atomic_write_text(out, json.dumps(figures, indent=1))
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    else:
        print_text(figures)


def fail(message: str, code: int = 2) -> int:
    """One ``error:`` line on stderr; returns the exit status for ``main`` to return."""
    print(f"error: {message}", file=sys.stderr)
    return code
