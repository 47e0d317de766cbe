"""Smoke test of dev/fault_injection.py: its detectors catch what they must, and one real trial
(Ctrl-C at a random moment of fsrt export, then a rerun) runs end to end with no failure."""

from __future__ import annotations

import importlib.util
import json
import signal
import sqlite3
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "dev" / "fault_injection.py"


@pytest.fixture(scope="module")
def fi():
    spec = importlib.util.spec_from_file_location("fault_injection", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_injection"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules["fault_injection"]


def test_detectors_flag_tracebacks_bad_output_and_damaged_data(fi, tmp_path):
    trial = fi.Trial(0, "export", "sigint", seed=0)
    fi.judge_output(trial, 1, "Traceback (most recent call last):\n  ...\nValueError: x\n", (130,))
    assert trial.problems == ["traceback", "exit code 1, expected 130", "error output is not one final 'error:' line"]
    clean = fi.Trial(1, "export", "sigint", seed=0)
    fi.judge_output(clean, 130, "exporting ...\nerror: interrupted\n", (130,))
    assert clean.ok

    (tmp_path / "m.onnx").write_bytes(b"not an onnx file")
    assert fi.check_export(tmp_path, finished=True)[0].startswith("m.onnx is corrupt")
    (tmp_path / ".m.onnx.abc.tmp").write_bytes(b"")
    assert fi.temp_leftovers(tmp_path) == [".m.onnx.abc.tmp"]

    fi.prepare("bench", tmp_path)
    assert fi.check_bench(tmp_path, finished=False) == []
    con = sqlite3.connect(tmp_path / "fsrt.db")
    con.execute("DELETE FROM run_points")
    con.commit()
    con.close()
    assert fi.check_bench(tmp_path, finished=False) == ["the run stored before the fault was lost"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "summary.json").write_text('{"top1": NaN}')
    assert fi.check_train(tmp_path, finished=True) == ["summary.json is not valid JSON (ValueError)",
                                                       "finished without last.pt"]


def test_one_trial_end_to_end():
    """Started as a shell starts a background job (SIGINT ignored, which fsrt would inherit), the
    script still interrupts fsrt: the Ctrl-C (at 3.5 s for seed 0, mid-export) ends it with 130."""
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json"], capture_output=True, text=True,
                          timeout=900, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    summary = json.loads(proc.stdout)
    assert summary["runs"] == 1 and list(summary["by_command_and_fault"]) == ["export sigint"]
    assert summary["failed"] == 0, summary["trials"]
    trial = summary["trials"][0]
    assert trial["landed"] and trial["exit_code"] in (130, -signal.SIGINT), trial
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_run_that_ignores_its_signal_is_a_failure(fi, monkeypatch, tmp_path):
    monkeypatch.setattr(fi, "_run_and_signal", lambda args, delay, sig: (0, "", True, 45.0))
    trial = fi.Trial(0, "export", "sigint", seed=0)
    monkeypatch.setattr(fi, "CHECKS", {"export": lambda work, finished: []})
    fi.run_trial(trial, tmp_path)
    assert trial.problems == ["ignored the signal (worked on 45s after it, then exit 0)"]
    assert fi.summarize([trial])["failures_by_kind"]["signal ignored"] == 1
