"""A machine-wide measurement lock: two fsrt measurements on one machine would time each other.

Two benchmarks sharing the cores store contended timings (an eager model measured at 22 ms
instead of 5 ms) that look like any other figure. Whoever measures holds an exclusive
``flock`` on one file in the system's temp folder; the kernel releases it when the process
ends, however it ends, so a crash never leaves a stale lock. A second measurement waits,
saying whose lock it waits for, up to a limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from fsrt.errors import FsrtError


def lock_path() -> Path:
    """The lock file (``FSRT_MEASURE_LOCK`` overrides it, e.g. per container)."""
    return Path(os.environ.get("FSRT_MEASURE_LOCK") or Path(tempfile.gettempdir()) / "fsrt-measure.lock")


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"PID {text}" if text.isdigit() else "another process"


@contextlib.contextmanager
def measurement_lock(timeout_s: float = 3600.0, on_wait: Callable[[str], None] | None = None,
                     poll_s: float = 0.5) -> Iterator[None]:
    """Hold the machine's measurement lock for the block; wait up to ``timeout_s`` for it.

    ``on_wait(holder)`` is called once if the lock is busy. Raises ``FsrtError`` on timeout.
    """
    path = lock_path()
    try:
        fd, writable = os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:  # another user's lock file: flock works on a read-only descriptor too
        fd, writable = os.open(path, os.O_RDONLY), False
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and on_wait:
                    on_wait(_holder(path))
                    told = True
                if time.monotonic() >= deadline:
                    raise FsrtError(f"another fsrt measurement ({_holder(path)}) held {path} for over "
                                    f"{timeout_s:g} s; wait for it to finish, then rerun (stored points resume)"
                                    ) from None
                time.sleep(poll_s)
        if writable:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            if writable:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
