"""Smoke test of the developer script dev/train_speed.py (its figures are measured, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


def test_train_speed_script_runs_both_parts_and_reports_its_figures():
    cmd = [sys.executable, str(REPO / "dev" / "train_speed.py"), "--models", "RegNetX-200MF", "--epochs", "1",
           "--max-steps", "2", "--rounds", "2", "--round-epochs", "2", "--images", "256", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    (d,) = out["digits"]
    assert "error" not in d, d
    assert d["model"] == "RegNetX-200MF" and d["resolution"] == 32 and d["epochs"] == 1
    assert 0 <= d["top1"] <= 1 and d["train_cpu_min"] > 0 and len(d["curve"]) == 1
    assert "warmup_epochs" in d["adapted"]            # the default recipe, adapted to a 1-epoch run
    (t,) = out["throughput"]
    assert t["rounds"] == 2
    for key in ("ratio_wall", "ratio_cpu", "fsrt_images_per_s", "plain_images_per_s"):
        assert 0 < t[key]["min"] <= t[key]["median"] <= t[key]["max"], (key, t[key])
