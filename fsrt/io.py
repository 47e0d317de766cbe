"""Reading and writing files safely: outputs appear whole or not at all, existing files are
replaced only when asked, and unreadable or unwritable places become one-line ``FsrtError``s."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from fsrt.errors import FsrtError, os_error_text, write_failure


def cache_dir() -> Path:
    """fsrt's cache folder (TensorRT timing caches, what was measured about each machine):
    ``$FSRT_CACHE_DIR``, else ``$XDG_CACHE_HOME/fsrt``, else ``~/.cache/fsrt``."""
    if os.environ.get("FSRT_CACHE_DIR"):
        return Path(os.environ["FSRT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fsrt"


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` only if the block completes.

    Data streams to a temp file beside ``path`` (so large outputs such as checkpoints are never
    held in memory), which is synced, given the usual umask mode and renamed into place; on any
    error the temp file is removed and ``path`` is untouched.
    """
    p = Path(path)
    with _new_folders_removed_on_error(p.parent):
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        recording = None
        try:
            with os.fdopen(fd, "wb") as f:
                recording = _WriteErrorRecorder(f)
                yield recording
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual mode
            os.replace(tmp, p)
        except BaseException as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(e, Exception):  # say which file failed, and the OS's reason even if a library hid it
                failed = recording.error if recording is not None and recording.error is not None else e
                if failed is not e or (isinstance(e, OSError) and e.filename is None):
                    raise OSError(failed.errno, failed.strerror or str(failed), str(p)) from e
            raise


class _WriteErrorRecorder:
    """A binary file that remembers the OSError its ``write`` raised: libraries such as
    ``torch.save`` swallow it and raise their own error ("unexpected pos"), losing the
    reason (No space left on device) that ``atomic_writer`` then reports."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextlib.contextmanager
def _new_folders_removed_on_error(folder: Path) -> Iterator[None]:
    """Create ``folder`` (with its parents); if the block fails, remove the folders this call
    created (when still empty), so a failed write leaves no trace at all."""
    created = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        created.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        for d in created:  # innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Text version of ``atomic_write_bytes`` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a ``what`` such as "spec file"); an unreadable, missing or
    binary file is a one-line ``FsrtError`` naming it."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise FsrtError(f"cannot read {what} {p}: {os_error_text(e)}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FsrtError(f"{what} {p} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "is it really a YAML/JSON file?") from None


def refuse_existing(path: str | Path, force: bool) -> Path:
    """``path`` when it may be written: a missing file, or any file with ``force``; an existing
    file without ``force`` is an ``FsrtError`` (the one overwrite rule of every fsrt output)."""
    p = Path(path)
    if p.is_dir():
        raise FsrtError(f"{p} is a folder; give a file name")
    if p.exists() and not force:
        raise FsrtError(f"{p} exists; pass --force to replace it")
    return p


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Make sure ``folder`` can be created and written, before long work starts, without
    leaving anything: a temp file is made and removed in it, or in the nearest folder above it
    that exists. Failure is a one-line ``FsrtError``."""
    p = Path(folder)
    probe_in = p
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise FsrtError(f"cannot use {what} {p}: {probe_in} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fsrt-probe.", suffix=".tmp", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise FsrtError(f"cannot write into {what} {p}: {os_error_text(e)}; fix it or choose another "
                        "place (nothing was measured or written)") from None
    return p


def write_folder(out: str | Path, files: dict[str, bytes], what: str) -> dict[str, Path]:
    """Write ``files`` (relative path -> bytes) into the folder ``out``, all or nothing.

    Everything is first written and synced into a hidden staging folder, then renamed into
    place (renames need no space): a new ``out`` is the staging folder renamed in one step; in
    an existing ``out`` (staged inside it) each file replaces its old version only after all were
    staged. A failure while staging (disk full, permission, interruption) removes the staging
    folder and anything this call created, so no half-written folder is left. OS errors become
    a one-line ``FsrtError`` naming ``what``.
    """
    out = Path(out)
    try:
        if out.is_dir():
            return _write_into_existing(out, files)
        with _new_folders_removed_on_error(out.parent):
            with _staging(out.parent, out.name) as stage:
                _stage_files(stage, files)
                os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
                os.rename(stage, out)
    except OSError as e:
        raise write_failure(e, f"{what} {out}") from None
    return {rel: out / rel for rel in files}


def _write_into_existing(out: Path, files: dict[str, bytes]) -> dict[str, Path]:
    with _staging(out, "fsrt") as stage:
        _stage_files(stage, files)
        folders = sorted({(out / rel).parent for rel in files} - {out})
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)  # before any file moves: a failure here changes nothing
        for rel in files:
            os.replace(stage / rel, out / rel)
    return {rel: out / rel for rel in files}


@contextlib.contextmanager
def _staging(parent: Path, name: str) -> Iterator[Path]:
    """A hidden temp folder in ``parent``, removed afterwards whatever happens (after a
    successful rename it no longer exists)."""
    import shutil

    stage = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stage_files(stage: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(target, 0o666 & ~current_umask())
