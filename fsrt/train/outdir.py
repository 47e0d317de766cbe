"""The run folder (``--out``): checked before any work starts, and not left behind empty.

``check_out_dir`` runs before the banner, the data and the model, so that a run that cannot
write its results, would overwrite another run, or has nothing to resume fails at once with
one line instead of after an epoch.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fsrt.errors import FsrtError, first_line


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(out: Path, resume: bool) -> None:
    """``out`` is (or can become) a writable folder; without ``resume`` it holds no run yet,
    with ``resume`` it holds ``last.pt``."""
    out = Path(out)
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise FsrtError(f"--out {out} is a file; give a folder for the run's checkpoints and logs")
    if resume and not last.is_file():
        raise FsrtError(f"--resume: no checkpoint at {last} (give the run folder with --out)")
    if not resume and last.exists():
        raise FsrtError(f"{last} exists: pass --resume to continue that run or choose another --out")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise FsrtError(f"--out {out} cannot be created: {base} is a file, not a folder")
    try:  # the real test (permissions, read-only file systems); the probe file vanishes on close
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        raise FsrtError(f"--out {out} is not writable ({base}: {e.strerror or first_line(e)}); "
                        "choose a writable --out") from None


@contextlib.contextmanager
def removing_new_empty_folder(out: Path) -> Iterator[None]:
    """Remove ``out`` again when it did not exist before and the block failed before writing
    anything into it (nothing half-made is left behind)."""
    out = Path(out)
    existed = out.exists()
    try:
        yield
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
