"""Opening an SQLite file safely: whole creation, read-only opening, failures explained.

SQLite reports a locked, read-only, full or unopenable database with terse codes, and a
connection to a healthy file that is merely locked fails just like a corrupt one. This module
turns each failure into a one-line ``FsrtError`` that says what is really wrong (locked by
which process, folder not writable, disk full) and what to do, and builds new databases in a
temp file so a failure never leaves a half-built one behind.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from fsrt.errors import FsrtError, write_failure
from fsrt.file_users import describe_users
from fsrt.io import current_umask


class ExplainedConnection(sqlite3.Connection):
    """A connection whose operational failures become ``FsrtError``s from ``explain(error)``
    (set after connecting); integrity and programming errors stay as they are: they are bugs."""

    explain: Callable[[sqlite3.Error], FsrtError]

    def execute(self, *args):
        with self._explained():
            return super().execute(*args)

    def executemany(self, *args):
        with self._explained():
            return super().executemany(*args)

    def executescript(self, script):
        with self._explained():
            return super().executescript(script)

    def commit(self):
        with self._explained():
            return super().commit()

    def __exit__(self, *exc):
        with self._explained():
            return super().__exit__(*exc)

    @contextlib.contextmanager
    def _explained(self):
        try:
            yield
        except sqlite3.DatabaseError as e:
            if type(e) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise
            raise self.explain(e) from None


def connect(path: Path, readonly: bool, timeout: float) -> ExplainedConnection:
    """An ``ExplainedConnection`` to ``path`` with rows as ``sqlite3.Row``; ``readonly`` opens it
    with SQLite's ``mode=ro`` so nothing, not even an empty file, is ever written."""
    target, uri = (path.absolute().as_uri() + "?mode=ro", True) if readonly else (str(path), False)
    try:
        db = sqlite3.connect(target, timeout=timeout, uri=uri, factory=ExplainedConnection)
    except sqlite3.Error as e:
        raise explain(e, path) from None
    db.explain = lambda e: explain(e, path)
    db.row_factory = sqlite3.Row
    return db


def in_memory_copy(db: ExplainedConnection, path: Path) -> ExplainedConnection:
    """A copy of the database ``db`` (opened from ``path``) in memory, for a read-only command that
    must change what it reads (upgrade an old schema) without writing the file; ``db`` is closed."""
    mem = sqlite3.connect(":memory:", factory=ExplainedConnection)
    mem.explain = lambda e: explain(e, path)
    mem.row_factory = sqlite3.Row
    try:
        with db._explained():
            db.backup(mem)
    except BaseException:
        mem.close()
        raise
    finally:
        db.close()
    return mem


def check_writable(path: Path) -> None:
    """Say why the database at ``path`` cannot be written before trying: a file in the way, or a
    folder or file without write permission. Creates the folder."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FsrtError(f"cannot create the results folder {folder}: a file is in the way") from None
    except OSError as e:
        raise write_failure(e, f"the results folder {folder}") from None
    if _on_read_only_file_system(folder):
        raise FsrtError(f"cannot write results database {path}: {folder} is on a read-only file system; "
                        "pass --db elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FsrtError(f"cannot write results database {path}: its folder {folder} is not writable; "
                        "fix its permissions or pass --db elsewhere")
    if path.exists() and not os.access(path, os.W_OK):
        raise FsrtError(f"results database {path} is read-only; make it writable or pass --db elsewhere")


def _on_read_only_file_system(folder: Path) -> bool:
    """True when ``folder`` is on a file system mounted read-only (permissions cannot help)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def create_whole(path: Path, init: Callable[[sqlite3.Connection], None]) -> None:
    """Create the database ``path`` by running ``init`` on a temp file beside it, then moving the
    finished file into place; disk full or an interruption leaves nothing behind. An empty
    placeholder file at ``path`` is replaced; a database another process created meanwhile is kept."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=path.parent)
    except OSError as e:
        raise write_failure(e, f"results database {path}") from None
    os.close(fd)
    try:
        db = sqlite3.connect(tmp, factory=ExplainedConnection)
        db.explain = lambda e: explain(e, path, creating=True)
        try:
            init(db)
        finally:
            db.close()
        os.chmod(tmp, 0o666 & ~current_umask())
        if path.exists():
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
    except OSError as e:
        raise write_failure(e, f"results database {path}") from None
    finally:
        for leftover in (tmp, tmp + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def explain(e: sqlite3.Error, path: Path, creating: bool = False) -> FsrtError:
    """What an SQLite failure on the database ``path`` means, in one line with what to do."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    where = f"results database {path}"
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        kept = "nothing was written" if creating else "what was stored before is intact"
        return FsrtError(f"cannot write {where}: the disk is full; free some space or pass --db elsewhere ({kept})")
    if creating:
        return FsrtError(f"cannot create {where}: {text}; pass --db elsewhere (nothing was written)")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        holders = describe_users(path, f"{path}-journal", f"{path}-wal")
        return FsrtError(f"{where} is locked by {holders or 'another process'}; wait for it to finish or pass "
                         "--db elsewhere (the database is fine)")
    if name == "SQLITE_READONLY_ROLLBACK":
        return FsrtError(f"{where} needs recovery after an interrupted write; run fsrt bench with this --db once")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return FsrtError(f"{where} is read-only; make it (and its folder) writable or pass --db elsewhere")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return FsrtError(f"cannot open {where}: the file is not readable or its folder {path.parent} is not "
                         "writable; fix permissions or pass --db elsewhere")
    if name.startswith("SQLITE_IOERR"):
        return FsrtError(f"cannot read or write {where}: I/O error ({text}); check the disk")
    return FsrtError(f"{where} is corrupt or not SQLite ({text}); move it aside and rerun (nothing was changed)")
