"""Helpers for fault tests: run the CLI in this process (so faults can be injected with
monkeypatch) and find a folder nobody, not even root, can write into."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import CliResult

# sysfs refuses new files and folders to every user, root included, on every Linux machine.
UNWRITABLE_ROOT = Path("/sys")


def unwritable_folder() -> Path:
    """A folder path under sysfs where creating anything fails with EPERM/EACCES."""
    target = UNWRITABLE_ROOT / "fsrt-test-no-write"
    try:
        target.mkdir()
    except OSError:
        return target
    target.rmdir()
    raise AssertionError(f"{UNWRITABLE_ROOT} accepted a new folder; these tests need a Linux sysfs")


def run_main(capsys, *args: str) -> CliResult:
    """Run ``fsrt.cli.main`` in this process: faults injected with monkeypatch take effect."""
    from fsrt.cli import main

    capsys.readouterr()
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted), hidden temp files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def files_snapshot(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def no_temp_files(folder: Path) -> bool:
    """True when no staging or temp leftovers (``.*.tmp``, ``.*.partial``, ``.*.creating``) are there."""
    return not [n for n in os.listdir(folder) if n.startswith(".") and n.endswith((".tmp", ".partial", ".creating"))]
