"""Which other processes have a file open, to say who holds a lock instead of guessing.

Linux only (``/proc/<pid>/fd``); elsewhere, or for processes of other users that cannot be
inspected, the answer is simply shorter.
"""

from __future__ import annotations

import os
from pathlib import Path


def processes_using(*paths: str | Path) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every other process with one of ``paths`` open, by pid."""
    wanted = {os.path.realpath(p) for p in paths}
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if _has_open(entry / "fd", wanted):
            found.append((int(entry.name), _command_line(entry)))
    return sorted(found)


def _has_open(fd_dir: Path, wanted: set[str]) -> bool:
    try:
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) in wanted:
                    return True
            except OSError:
                continue
    except OSError:  # the process ended, or belongs to someone we may not inspect
        return False
    return False


def _command_line(proc_dir: Path) -> str:
    try:
        raw = (proc_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(part.decode("utf-8", "replace") for part in raw.split(b"\0") if part)
    return " ".join(text.split())[:80] or "?"  # one line, even for `python -c` scripts


def describe_users(*paths: str | Path) -> str:
    """``"PID 123 (fsrt bench ...)"``, several joined by commas, or ``""`` when none is visible."""
    return ", ".join(f"PID {pid} ({cmd})" for pid, cmd in processes_using(*paths))
