"""Smoke tests of the developer speed scripts in dev/: each runs its --quick setting end to end.

The figures of a quick run say nothing about speed (tiny models, a few repeats on a shared
machine); these tests check that every script still runs against the real harness, samplers
and exporters, follows the CLI convention, and reports figures that are consistent with what
it was asked to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_dev_script
from fsrt.zoo import zoo_names

SCRIPTS = ("export_speed", "scaling_speed", "complexity_speed", "report_speed", "kernel_speed", "patched_model_speed",
           "gpu_tables", "fault_injection")


def _run(name: str, capsys, *args: str) -> dict:
    code = load_dev_script(name).main(["--quick", "--json", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_follows_the_cli_convention(name):
    res = subprocess.run([sys.executable, str(REPO / "dev" / f"{name}.py"), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--quick" in res.stdout and "--json" in res.stdout


def test_export_speed(capsys):
    doc = _run("export_speed", capsys)
    entry = doc["models"]["RegNetX-200MF-shallow"]  # one block per stage: a quick export
    assert entry["resolution"] == 32 and set(entry["export"]) == {"dynamic"}  # --quick skips the static graph
    for export in entry["export"].values():
        assert export["nodes"] > 0 and export["parity_max_rel"] < 1e-4  # the fp32 bound export enforces
        assert set(export["stages"]) == {"prepare", "export", "slim", "check", "parity"}
    lat = entry["latency"]["batch1"]
    assert lat["eager"]["n"] >= 3 and lat["onnxruntime"]["median_ms"] > 0
    assert lat["speedup"] == pytest.approx(lat["eager"]["median_ms"] / lat["onnxruntime"]["median_ms"])


def test_scaling_speed(capsys):
    doc = _run("scaling_speed", capsys)
    assert set(doc["scale_spec_ms"]) == {"RegNetY-400MF", "EfficientNet-B0", "ResNet-RS-420"}
    assert doc["zoo_sweep"]["scaled_models"] == 3 * 3 * 6  # 3 models x 3 alphas x s = 1, 2, 4, 8, 16, 32
    for band in doc["sample_band_360M_400M"].values():
        assert band["kept"] == 2 and band["draws"] >= 2
    (search,) = doc["target_flops_search"].values()
    assert abs(search["miss_pct"]) <= 1.0  # lands within the default 1% tolerance


def test_complexity_speed(capsys):
    doc = _run("complexity_speed", capsys, "--n", "20")
    assert doc["zoo"]["models"] == len(zoo_names())
    assert doc["sampled"]["n"] == 20 and doc["sampled"]["median_flops"] > 0


def test_report_speed(capsys):
    doc = _run("report_speed", capsys)
    assert doc["points_per_run"] == 5 * 3 * 2  # runtimes x alphas x s in (1, 2)
    assert len(doc["stage_ms"]) == 3 and all(ms > 0 for ms in doc["stage_ms"].values())
    assert 0 < doc["report_html_kib"] < doc["report_folder_kib"]


def test_kernel_speed_runs_interpreted_on_cpu(capsys, monkeypatch):
    from fsrt.kernels import HAVE_TRITON

    if not HAVE_TRITON:
        pytest.skip("triton is not installed (it comes with the dev extra on Linux)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    doc = _run("kernel_speed", capsys, "--device", "cpu")
    assert doc["selfcheck"] and all(c["ok"] for c in doc["selfcheck"])
    (row,) = doc["results"]
    assert row["model"] == "RegNetX-200MF" and row["group_width"] == 8  # RegNetX-200MF's published g
    assert row["auto_rel_err"] < 1e-5 and row["auto_ms"] > 0


def test_patched_model_speed_runs_interpreted_on_cpu(capsys, monkeypatch):
    """The whole-model comparison patches RegNetX-200MF's grouped convs (one per block: 13 in its
    published depths 1+1+4+7) and the patched network, with BN and ReLU fused into the kernels,
    computes what the unpatched one does."""
    from fsrt.kernels import HAVE_TRITON

    if not HAVE_TRITON:
        pytest.skip("triton is not installed (it comes with the dev extra on Linux)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    doc = _run("patched_model_speed", capsys, "--device", "cpu")
    assert doc["model"] == "RegNetX-200MF" and doc["patched_layers"] == 1 + 1 + 4 + 7
    (row,) = doc["results"]
    assert row["ok"] and row["rel_err"] < 1e-4 and row["cudnn_ms"] > 0 and row["patched_ms"] > 0
    assert row["speedup"] == pytest.approx(row["cudnn_ms"] / row["patched_ms"])


def test_gpu_tables_reads_a_gpu_runs_results(tmp_path, capsys):
    """Per base model and over all models, r of latency against each metric over distinct measured
    points (a failed point and a point listed under a second strategy left out), and each CUDA-graph
    point over the eager point of the same model, strategy and s."""
    def point(model, strategy, s, flops, acts, ms, status="ok"):
        return dict(model=model, strategy=strategy, s=s, runtime="eager", mode="infer", precision="fp16", batch=64,
                    flops=flops, params=flops // 100, acts=acts, latency_ms=ms, status=status)

    flops, acts = [4e8, 8e8, 8.1e8, 16e8], [4e6, 5e6, 9e6, 7e6]
    names = ["A", "A@dwr:s=2", "A@w:s=2", "A@w:s=4"]
    fig2 = [point(n, "w" if "w:" in n else "dwr", 1, f, a, a * 2e-6) for n, f, a in zip(names, flops, acts)]
    fig2 += [dict(fig2[0], strategy="w"), point("A@dwr:s=4", "dwr", 4, 9e8, 1e7, None, "parity_failed")]
    graphs = [dict(p, latency_ms=p["latency_ms"] * 0.8) for p in fig2[:4]]
    logs = tmp_path / "logs"
    logs.mkdir()
    for name, pts in (("fig2", fig2), ("graphs", graphs)):
        (logs / f"{name}.txt").write_text(json.dumps({"points": pts, "unavailable": {"trt": "not installed"}}))
    code = load_dev_script("gpu_tables").main([str(tmp_path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    a_row = next(r for r in doc["figure2"] if r["run"] == "fig2" and r["model"] == "A")
    assert a_row["n"] == 4 and a_row["acts"] == pytest.approx(1.0)  # latency is 2 ns per activation
    assert a_row["flops"] == pytest.approx(np.corrcoef(flops, acts)[0, 1])
    assert [r["ratio"] for r in doc["effects"]] == [pytest.approx(0.8)] * 4
    assert doc["runs"][0]["unavailable"] == {"trt": "not installed"}
    assert load_dev_script("gpu_tables").main([str(tmp_path / "missing")]) == 2


def test_gpu_check_has_a_body_for_every_phase_and_rehearses_on_cpu(tmp_path):
    """The GPU run's script, in its CPU rehearsal: the chosen phases run (others: eager measured beside
    the runtimes this machine cannot run, each with its reason), the rest are not started, and the
    archive that comes back holds the phase's JSON document."""
    import re
    import tarfile

    text = (REPO / "dev" / "gpu_check.sh").read_text()
    phases = re.search(r'^ALL="([^"]+)"', text, re.M).group(1).split()
    bodies = set(re.findall(r"^    ([a-z0-9]+)\) ", text, re.M))
    assert phases[:3] == ["setup", "tests", "fig2"] and set(phases) <= bodies
    env = {**os.environ, "REHEARSAL": "1", "PHASES": "setup others", "WORK": str(tmp_path / "work"),
           "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "DEADLINE": "300"}
    res = subprocess.run(["bash", "dev/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr
    status = (tmp_path / "out" / "status.txt").read_text()
    assert "setup rc=0" in status and "others rc=0" in status and "fig2" not in status.split("\n", 1)[1]
    with tarfile.open(tmp_path / "out" / "gpu-results.tgz") as tar:
        doc = json.load(tar.extractfile("logs/others.txt"))
    assert {p["runtime"] for p in doc["points"] if p["status"] in ("ok", "unstable")} >= {"eager", "ort"}
    assert "TensorRT" in doc["unavailable"]["trt"]
