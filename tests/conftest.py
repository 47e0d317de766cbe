"""Shared test helpers."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Under pytest-xdist each worker shares the 2 cores with the others: one intra-op thread per
# worker (and per CLI subprocess it starts) avoids oversubscription stalls on small ops.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Benchmarks in tests are functional checks, not measurements: each test worker takes its own
# measurement lock instead of queueing behind every other fsrt measurement on the machine.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_LOCK = os.path.join(tempfile.gettempdir(), f"fsrt-test-lock-{os.getpid()}-{_WORKER}")
os.environ.setdefault("FSRT_MEASURE_LOCK", _LOCK)

REPO = Path(__file__).resolve().parents[1]
SHARED_ZOO = REPO.parent / "shared" / "reference" / "zoo.json"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_fsrt(*args: str, cwd: str | Path | None = None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run the real ``fsrt`` console entry point in a subprocess (true exit codes and streams)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", "from fsrt.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env=full_env, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(res: CliResult, *fragments: str, code: int = 2) -> None:
    """Bad input: exit code, exactly one stderr line starting with 'error:', no traceback."""
    assert res.code == code, (res.code, res.err)
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    for frag in fragments:
        assert frag.lower() in lines[0].lower(), (frag, lines[0])


def load_dev_script(name: str):
    """Import ``dev/<name>.py`` as a module: ``dev/`` is not a package, and its scripts import the
    shared ``devcli`` beside them, so the folder goes on ``sys.path`` as when a script runs."""
    folder = str(REPO / "dev")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


@pytest.fixture
def fsrt_cli():
    return run_fsrt


@pytest.fixture(autouse=True)
def _private_measurement_lock(monkeypatch, request, tmp_path_factory):
    """Each test measures under its own lock and cache folder: a benchmark another test left running (or a README
    example on the same worker) must not make a test wait and print a 'waiting' line. The lock
    files live in the run's temporary folder, which a passing run removes."""
    name = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    monkeypatch.setenv("FSRT_MEASURE_LOCK", str(tmp_path_factory.getbasetemp() / f"fsrt-test-lock-{name}"))
    # and starts from no machine decision kept by another test or by the user's own runs
    monkeypatch.setenv("FSRT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / f"fsrt-cache-{name}"))


def pytest_unconfigure(config):
    """Remove this process's fallback lock file (tests use their own in the run's base folder):
    CI shares the machine's temp folder, so a run leaves nothing there."""
    if os.environ.get("FSRT_MEASURE_LOCK") == _LOCK and os.path.exists(_LOCK):
        os.unlink(_LOCK)


# Longest first, so the minutes-long README sections do not start last and run alone at the end.
_FIRST = ("test_readme.py::test_readme_section_runs_as_written[Benchmark sweep]",
          "test_readme.py::test_readme_section_runs_as_written[Scaling advice]",
          "test_readme.py::test_readme_section_runs_as_written[CLI tour]",
          "test_readme.py::test_readme_section_runs_as_written[Benchmark sweep (own folders)]")


def pytest_collection_modifyitems(config, items):
    """Start the longest tests first (see ``_FIRST``); the rest keep their order."""
    rank = {name: i for i, name in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("/")[-1], len(rank)))
