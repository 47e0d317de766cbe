"""Failures beyond bad arguments through the real CLI: binary spec files, absurd thread counts,
out-of-memory sizes, one overwrite rule, strict lists and numbers, options that cannot apply,
--debug anywhere, interruptions. Each must be one `error:` line with the right exit code and
leave nothing behind."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from fault_helpers import run_main, unwritable_folder

from conftest import assert_one_line_error, run_fsrt

NOT_UTF8 = b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 16  # a PNG header, then invalid UTF-8
TINY_BENCH = ("RegNetX-200MF", "--resolution", "32", "--sweep", "s=1", "--strategy", "w", "--runtimes", "eager",
              "--precision", "fp32", "--measure-s", "0.05", "--warmup-s", "0.02")


# -- 1: a binary file given as a spec or a recipe ---------------------------------------------------
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_binary_spec_file_is_one_line(tmp_path, suffix):
    spec = tmp_path / f"g{suffix}"
    spec.write_bytes(NOT_UTF8)
    assert_one_line_error(run_fsrt("complexity", str(spec)), "not UTF-8", str(spec))


def test_binary_recipe_file_is_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(NOT_UTF8)
    res = run_fsrt("train", "RegNetX-200MF", "--data", "digits", "--recipe", str(recipe), "--print-config")
    assert_one_line_error(res, "recipe file", "not UTF-8")


# -- 2: thread counts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", ["99999", "5000"])
def test_absurd_thread_counts_are_refused_before_anything_is_written(tmp_path, threads):
    db = tmp_path / "x.db"
    res = run_fsrt("bench", *TINY_BENCH, "--threads", threads, "--db", str(db), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "--threads", f"got {threads}", "CPUs")
    assert not db.exists() and not (tmp_path / "o").exists()


# -- 3: out of memory ------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [["--resolution", "100000", "--sweep", "s=1"], ["--sweep", "s=1e9"]])
def test_bench_refuses_sizes_that_cannot_fit_with_the_estimate(tmp_path, extra):
    db = tmp_path / "x.db"
    res = run_fsrt("bench", "RegNetX-200MF", "--strategy", "w", "--runtimes", "eager", *extra, "--db", str(db),
                   "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "needs at least", "GiB", "available")
    assert not db.exists()


def test_bench_train_steps_are_refused_when_a_step_cannot_fit(tmp_path):
    db = tmp_path / "x.db"
    res = run_fsrt("bench", "RegNetX-200MF", "--strategy", "w", "--runtimes", "eager", "--mode", "train",
                   "--batch", "100000", "--sweep", "s=1", "--db", str(db), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "batch 100000, training step (float64 reference) needs at least", "GiB", "available")
    assert not db.exists()


def test_export_refuses_a_resolution_that_cannot_fit(tmp_path):
    res = run_fsrt("export", "RegNetX-200MF", "-r", "100000", "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(res, "needs at least", "GiB", "--no-parity")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fault", ["memory_error", "cuda_oom", "cpu_alloc"])
def test_a_real_out_of_memory_is_one_line(capsys, monkeypatch, fault):
    import importlib

    import torch

    complexity = importlib.import_module("fsrt.complexity")  # the package re-exports a function of that name
    errors = {"memory_error": MemoryError(),
              "cuda_oom": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail"),
              "cpu_alloc": RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                        "memory: you tried to allocate 1099511627776 bytes.")}

    def allocate(*args, **kwargs):
        raise errors[fault]

    monkeypatch.setattr(complexity, "complexity_breakdown", allocate)
    res = run_main(capsys, "complexity", "RegNetX-200MF")
    assert_one_line_error(res, "out of memory")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "free some space"), (errno.EACCES, "permissions")])
def test_an_unexpected_write_failure_is_one_line(capsys, monkeypatch, code, words):
    import importlib

    complexity = importlib.import_module("fsrt.complexity")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), "/data/cache.bin")

    monkeypatch.setattr(complexity, "complexity_breakdown", fail)
    res = run_main(capsys, "complexity", "RegNetX-200MF")
    assert_one_line_error(res, f"cannot write /data/cache.bin: {os.strerror(code)}", words)


# -- 12: one overwrite rule ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ("scale", "RegNetX-200MF", "--strategy", "w", "--s", "2"),
    ("sample", "--space", "regnet", "--flops", "150M-250M", "-n", "1", "--resolution", "64"),
])
def test_outputs_refuse_an_existing_file_without_force(tmp_path, command):
    out = tmp_path / ("out.yaml" if command[0] == "scale" else "out.jsonl")
    out.write_text("precious")
    assert_one_line_error(run_fsrt(*command, "-o", str(out)), "exists", "--force")
    assert out.read_text() == "precious"
    res = run_fsrt(*command, "-o", str(out), "--force")
    assert res.code == 0, res.err
    assert out.read_text() != "precious" and out.read_text().strip()


# -- 14, 15, 16, 17: inconsistencies ----------------------------------------------------------------------
@pytest.mark.parametrize("args, fragments", [
    (["models", "--family", "foo"], ["no zoo family 'foo'", "regnety", "effnet"]),
    (["complexity", "RegNetX-200MF", "-r", "3"], ["at least 8 pixels"]),
    (["sample", "--resolution", "3"], ["at least 8 pixels"]),
    (["export", "RegNetX-200MF", "-r", "3"], ["at least 8 pixels"]),
    (["scale", "RegNetX-200MF", "--strategy", "w", "--s", "2", "-o", "x.txt"], [".yaml, .yml or .json"]),
    (["export", "RegNetX-200MF", "--engine", "m.engine"], ["--engine only applies to", "--trt"]),
    (["export", "RegNetX-200MF", "--timing-cache", "t.cache", "--opt-level", "1"],
     ["--timing-cache, --opt-level only apply to", "--trt"]),
])
def test_inconsistent_options_are_refused(tmp_path, args, fragments):
    assert_one_line_error(run_fsrt(*args, cwd=tmp_path), *fragments)
    assert os.listdir(tmp_path) == []  # nothing written (no x.txt, no ONNX file)


@pytest.mark.parametrize("extra, fragment", [
    (["--batch", "1,,2"], "empty item"),
    (["--batch", "1,"], "empty item"),
    (["--measure-s", "nan"], "--measure-s must be a positive number, got nan"),
    (["--measure-s", "inf"], "--measure-s must be a positive number, got inf"),
    (["--warmup-s", "nan"], "--warmup-s must be a positive number, got nan"),
    (["--target-ci", "nan"], "--target-ci must be a positive number"),
    (["--budget-s", "nan"], "--budget-s must be zero or a positive number"),
    (["--resolution", "4"], "at least 8 pixels"),
    (["--cuda-graphs"], "--cuda-graphs"),
])
def test_bench_rejects_malformed_numbers_and_cpu_cuda_graphs(tmp_path, extra, fragment):
    db = tmp_path / "x.db"
    res = run_fsrt("bench", *TINY_BENCH, *extra, "--device", "cpu", "--db", str(db), "--out", str(tmp_path / "o"))
    assert_one_line_error(res, fragment)
    assert not db.exists()


# -- 19 (bench part): --out checked before measuring -------------------------------------------------------
def test_bench_out_that_cannot_be_written_fails_before_measuring(tmp_path):
    db = tmp_path / "x.db"
    res = run_fsrt("bench", *TINY_BENCH, "--db", str(db), "--out", str(unwritable_folder() / "run"))
    assert_one_line_error(res, "cannot write into the run folder", "nothing was measured")
    assert not db.exists()


# -- 24: --debug and a bare fsrt -----------------------------------------------------------------------------
def test_debug_keeps_the_exit_code_and_works_after_the_subcommand():
    for args in (["--debug", "complexity", "no-such-net"], ["complexity", "no-such-net", "--debug"]):
        res = run_fsrt(*args)
        assert res.code == 2, (args, res.err)
        assert "Traceback" in res.err and "FsrtError" in res.err
        assert res.err.strip().splitlines()[-1].startswith("error: unknown model"), res.err
    ok = run_fsrt("complexity", "RegNetX-200MF", "--debug", "--json")
    assert ok.code == 0 and ok.json()["flops"] == 199_040_872


def test_bare_fsrt_prints_the_help_like_click():
    res = run_fsrt()
    assert res.code == 2  # click's convention for a group called without a command
    assert res.err.startswith("Usage: fsrt") and "error:" not in res.err
    assert "Commands:" in res.err and "bench" in res.err


# -- 11: Ctrl-C and SIGTERM ----------------------------------------------------------------------------------
def _start(*args: str, cwd=None) -> subprocess.Popen:
    """fsrt as a terminal's foreground command runs it: SIGINT at its default. A suite started as a
    background job (``make test &``, nohup) has SIGINT ignored, and a child inherits that; fsrt rightly
    keeps an inherited ignore (the shell asked for it), so Ctrl-C could not be tested from there."""
    return subprocess.Popen([sys.executable, "-c", "from fsrt.cli import main; main()", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """Read stderr lines until one contains ``text``; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never appeared: {''.join(seen)}")


def test_ctrl_c_during_bench_exits_130_with_the_resume_hint(tmp_path):
    db, out = tmp_path / "fsrt.db", tmp_path / "run"
    proc = _start("bench", *TINY_BENCH[:-4], "--threads", "1", "--measure-s", "60", "--warmup-s", "0.02",
                  "--db", str(db), "--out", str(out))
    _wait_for(proc, "runtimes:")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    assert rest.strip().splitlines()[-1] == ("error: interrupted; measured windows and points are stored: rerun the "
                                             "same command to resume")
    import sqlite3

    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigterm_exits_143_in_one_line_and_leaves_no_temp_file(tmp_path):
    out = tmp_path / "samples.jsonl"
    proc = _start("sample", "--space", "anynetx_a", "--flops", "1M-1.1M", "-n", "1000", "--max-draws", "100000000",
                  "-o", str(out), cwd=tmp_path)
    time.sleep(8)  # past the imports, inside the sampling loop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip() == "error: terminated"
    assert os.listdir(tmp_path) == []


def test_ctrl_c_inside_the_onnx_exporter_is_an_interruption_not_an_exporter_failure(capsys, monkeypatch, tmp_path):
    import torch

    def interrupted_export(*args, **kwargs):
        # what torch.onnx.export does with a Ctrl-C during torch.export: wraps it in its own error
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("Failed to export the model with torch.export. This is step 1/3 of exporting the "
                               "model to ONNX. Next steps:") from e

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    res = run_main(capsys, "export", "RegNetX-200MF", "-r", "32", "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(res, "interrupted", code=130)
    assert "exporter failed" not in res.err
    assert os.listdir(tmp_path) == []


def test_sigterm_wrapped_by_a_library_still_exits_143(capsys, monkeypatch, tmp_path):
    import torch

    from fsrt.errors import Terminated

    def terminated_export(*args, **kwargs):
        try:
            raise Terminated
        except Terminated as e:
            raise RuntimeError("Failed to export the model with torch.export.") from e

    monkeypatch.setattr(torch.onnx, "export", terminated_export)
    res = run_main(capsys, "export", "RegNetX-200MF", "-r", "32", "-o", str(tmp_path / "m.onnx"))
    assert_one_line_error(res, "terminated", code=143)
    assert os.listdir(tmp_path) == []


def test_sigterm_during_bench_says_terminated_with_the_resume_hint(capsys, monkeypatch, tmp_path):
    from fsrt.bench import sweep_run
    from fsrt.errors import Terminated

    def terminated_sweep(*args, **kwargs):
        raise Terminated

    monkeypatch.setattr(sweep_run, "run_sweep", terminated_sweep)
    res = run_main(capsys, "bench", *TINY_BENCH, "--threads", "1", "--db", str(tmp_path / "fsrt.db"),
                   "--out", str(tmp_path / "run"))
    assert res.code == 143, res.err
    assert "Traceback" not in res.err and "interrupted" not in res.err
    errors = [ln for ln in res.err.splitlines() if ln.startswith("error:")]
    assert errors == ["error: terminated; measured windows and points are stored: rerun the same command to "
                      "resume"], res.err
    assert res.err.strip().splitlines()[-1] == errors[0]


def test_ctrl_c_while_advise_measures_exits_130_with_the_resume_hint(capsys, monkeypatch, tmp_path):
    from test_advise import _synthetic_store

    from fsrt.bench import sweep_run

    db = tmp_path / "fsrt.db"
    _synthetic_store(db)

    def interrupted_sweep(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "run_sweep", interrupted_sweep)
    res = run_main(capsys, "advise", "RegNetY-400MF", "--resolution", "128", "--target-flops", "1.05G", "--runtime",
                   "ort", "--threads", "1", "--db", str(db), "--out", str(tmp_path / "adv"), "--json")
    assert res.code == 130, res.err
    assert "Traceback" not in res.err
    assert res.err.strip().splitlines()[-1] == ("error: interrupted; measured windows are stored: rerun the same "
                                                "command to resume")


def test_advise_out_that_cannot_be_written_fails_before_measuring(capsys, monkeypatch, tmp_path):
    from test_advise import _synthetic_store

    from fsrt.bench import sweep_run

    db = tmp_path / "fsrt.db"
    _synthetic_store(db)
    monkeypatch.setattr(sweep_run, "run_sweep", lambda *a, **k: pytest.fail("measured before checking --out"))
    res = run_main(capsys, "advise", "RegNetY-400MF", "--resolution", "128", "--target-flops", "1.05G", "--runtime",
                   "ort", "--threads", "1", "--db", str(db), "--out", str(unwritable_folder() / "adv"))
    assert_one_line_error(res, "cannot write into the run folder", "nothing was measured")


# -- disk full on a plain output ------------------------------------------------------------------------------
def test_disk_full_writing_an_output_is_one_line_and_leaves_nothing(capsys, monkeypatch, tmp_path):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "new" / "scaled.yaml"
    res = run_main(capsys, "scale", "RegNetX-200MF", "--strategy", "w", "--s", "2", "-o", str(out))
    assert_one_line_error(res, "No space left on device", "nothing was written")
    assert os.listdir(tmp_path) == []  # neither the file, its temp file nor the folder made for it
