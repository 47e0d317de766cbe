"""Decisions measured about a machine, kept for every results database on it.

The thread-count probe (``noise.py``) decides how this machine is measured. A database stores the
decision, but a second database on the same machine would probe again, and on a shared VM the
probe's answer depends on the minute it runs: two default runs minutes apart into fresh databases
chose 1 and 2 threads (two-thread window spread 6.9% in one probe, 1.7% in the next), and their
figures differed by 1.47x on average, 1.72x at most. What was measured about the machine belongs to
the machine, so the decision is also kept in fsrt's cache folder (``$FSRT_CACHE_DIR``, else
``$XDG_CACHE_HOME/fsrt``, else ``~/.cache/fsrt``), one JSON file per machine fingerprint, and every
later database on the machine starts from it (``fsrt bench`` prints the file's path when it does).
``--threads N`` still overrides it; deleting the file makes the next run probe again. A database
that already holds a decision keeps its own, so resuming never changes its settings.

A cache that cannot be read or written is not an error: the database keeps the decision, and an
unreadable file is left as it is (never overwritten) and ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

from fsrt.io import atomic_write_text, cache_dir


def settings_path(machine_id: str) -> Path:
    """The file holding this machine's measured decisions."""
    return cache_dir() / "machines" / f"{machine_id}.json"


def _read(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def load(machine_id: str, key: str) -> dict | None:
    """The decision ``key`` measured on this machine by any earlier run, or None."""
    value = (_read(settings_path(machine_id)) or {}).get(key)
    return value if isinstance(value, dict) else None


def save(machine_id: str, key: str, value: dict) -> bool:
    """Keep ``value`` as this machine's decision ``key``; False when the cache could not take it
    (unwritable, or an unreadable file there that is not fsrt's to overwrite)."""
    path = settings_path(machine_id)
    doc = _read(path) if path.exists() else {}
    if doc is None:
        return False
    doc[key] = value
    try:
        atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True))
    except OSError:
        return False
    return True
