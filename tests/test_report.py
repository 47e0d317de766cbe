"""Report generation (`fsrt report`, `fsrt.bench.report`) from a synthetic run built through the Store API.

The fixture is structured so the answers are known independently of the code under test:
3 alpha-family strategies x 5 values of s x 2 runtimes, complexity set to the one-stage theory
(flops ~ s, params ~ s^((1+alpha)/2), acts ~ s^((2-alpha)/2)), and latency constructed as
c_runtime * acts with multiplicative log-normal noise (sigma 3%). So: latency ~ acts^1, latency
~ flops^((2-alpha)/2) per strategy, acts is the best predictor, openvino (c halved) is ~2x faster
than eager, and at the largest s width-only (alpha=1, fewest activations) is the fastest strategy.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import re
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench import analysis
from fsrt.bench.points import Point
from fsrt.bench.report import write_report
from fsrt.bench.store import Store
from fsrt.errors import FsrtError

STRATEGIES = (("dwr", 1 / 3), ("dWr", 0.8), ("w", 1.0))
S_VALUES = (1, 2, 4, 8, 16)
MS_PER_ACT = {"eager": 2.0e-6, "openvino": 1.0e-6}
F0, P0, A0 = 400e6, 4.3e6, 6.0e6
PEAK_FLOPS, COPY_BW = 1.0e12, 5.0e10  # FLOP/s (2 per multiply-add), bytes/s
SIGMA = 0.03


def _grid(seed: int = 0) -> list[dict]:
    """The measured points of the fixture run (plain dicts, the independent source of truth)."""
    rng = np.random.default_rng(seed)
    pts = []
    for runtime, c in MS_PER_ACT.items():
        for strategy, alpha in STRATEGIES:
            for s in S_VALUES:
                flops = round(F0 * s)
                params = round(P0 * s ** ((1 + alpha) / 2))
                acts = round(A0 * s ** ((2 - alpha) / 2))
                med = c * acts * math.exp(rng.normal(0.0, SIGMA))
                compute_ms = 2 * flops / PEAK_FLOPS * 1e3
                pts.append({
                    "model": f"Base@{strategy}:s={s}", "base": "Base", "family": "regnet", "strategy": strategy,
                    "alpha": alpha, "s": float(s), "flops_mult": float(s), "runtime": runtime, "precision": "fp32",
                    "batch": 1, "resolution": 64, "device": "cpu", "threads": 2, "flops": flops, "params": params,
                    "acts": acts, "status": "ok", "latency_ms": med, "latency_lo_ms": med * 0.99,
                    "latency_hi_ms": med * 1.01, "rounds": 6, "median_ms": med * 1.02, "p90_ms": med * 1.05,
                    "p99_ms": med * 1.1, "mean_ms": med * 1.01, "min_ms": med * 0.97, "cv": 0.02, "n": 50,
                    "peak_mem_bytes": 12 * acts + 4 * params, "l2": "warm", "parity_max_abs": 1e-6,
                    "parity_max_rel": 1e-6,
                    "floor_compulsory_ms": max(compute_ms, 4 * (params + 2 * 3 * 64 * 64) / COPY_BW * 1e3),
                    "floor_layer_ms": max(compute_ms, 8 * acts / COPY_BW * 1e3),
                })
    # one unstable point: counted in fits, flagged in the report
    unstable = next(p for p in pts if p["runtime"] == "eager" and p["strategy"] == "dWr" and p["s"] == 4)
    unstable.update(status="unstable", cv=0.2, latency_lo_ms=unstable["latency_ms"] * 0.95,
                    latency_hi_ms=unstable["latency_ms"] * 1.05)
    return pts


BAD_POINTS = [
    {"model": "Base@w:s=2", "base": "Base", "strategy": "w", "alpha": 1.0, "s": 2.0, "runtime": "onnxruntime",
     "precision": "fp32", "batch": 1, "device": "cpu", "threads": 2, "flops": round(F0 * 2), "params": 1,
     "acts": 1, "status": "parity_failed", "reason": "max rel err 0.3 > 1e-4", "latency_ms": 9999.0,
     "parity_max_abs": 0.5, "parity_max_rel": 0.3},
    {"model": "Base@w:s=4", "base": "Base", "strategy": "w", "alpha": 1.0, "s": 4.0, "runtime": "onnxruntime",
     "precision": "fp32", "batch": 1, "device": "cpu", "threads": 2, "flops": round(F0 * 4), "params": 1,
     "acts": 1, "status": "error", "reason": "session failed to load"},
]


def make_run(store: Store, name: str = "fixture", machine: str = "m1", scale: float = 1.0, seed: int = 0) -> list:
    """Store the fixture run (grid x ``scale`` latency) plus a parity failure and an error; return all points."""
    store.add_machine(machine, {"cpu": f"Test CPU {machine}", "os": "Linux", "gpu": None,
                                "versions": {"torch": "2.13.0", "openvino": "2025.0"}})
    store.put_ceiling(machine, "cpu", "fp32", 2, PEAK_FLOPS, COPY_BW)
    run_id = store.start_run(name, machine, {"sweep": "s=1..16", "seed": seed})
    pts = _grid(seed)
    for p in pts:
        for k in ("latency_ms", "latency_lo_ms", "latency_hi_ms", "median_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms"):
            p[k] *= scale
    for i, p in enumerate(pts + BAD_POINTS):
        store.put_point(run_id, machine, f"{name}-{i}", Point.from_row(p))
    store.set_unavailable(run_id, "tensorrt", "TensorRT is not installed (pip index lacks it)")
    store.finish_run(run_id)
    return pts + BAD_POINTS


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory):
    """One report written from the fixture run (shared by the read-only checks below)."""
    root = tmp_path_factory.mktemp("report")
    db = root / "fsrt.db"
    with Store(db) as store:
        pts = make_run(store)
        written = write_report(store, ["fixture"], root / "out")
    return {"db": db, "out": root / "out", "points": pts, "written": written,
            "summary": json.loads((root / "out" / "summary.json").read_text())}


def _ok(points, runtime=None):
    return [p for p in points if p["status"] in ("ok", "unstable") and (runtime is None or p["runtime"] == runtime)]


# -- statistics against numpy ----------------------------------------------------------------------
def test_loglog_fit_matches_numpy_polyfit():
    rng = np.random.default_rng(1)
    x = np.exp(rng.uniform(0, 5, 40))
    y = 3.0 * x ** 0.7 * np.exp(rng.normal(0, 0.1, 40))
    fit = analysis.loglog_fit(x.tolist(), y.tolist())
    k, b = np.polyfit(np.log(x), np.log(y), 1)
    assert fit.exponent == pytest.approx(k, rel=1e-10)
    assert fit.coefficient == pytest.approx(math.exp(b), rel=1e-10)
    assert fit.r2 == pytest.approx(np.corrcoef(np.log(x), np.log(y))[0, 1] ** 2, rel=1e-10)
    assert fit.n == 40
    # non-positive values are dropped, a constant x has no slope
    assert analysis.loglog_fit([1, 2, 0, 4], [1, 2, 5, 4]).exponent == pytest.approx(1.0)
    assert analysis.loglog_fit([2, 2, 2], [1, 2, 3]) is None
    assert analysis.loglog_fit([2], [1]) is None


def test_pearson_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.uniform(1, 100, 30)
    y = 2 * x + rng.uniform(0, 40, 30)  # positive, noisy
    assert analysis.pearson(x.tolist(), y.tolist()) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    assert analysis.pearson(x.tolist(), y.tolist(), log=True) == pytest.approx(
        np.corrcoef(np.log(x), np.log(y))[0, 1], rel=1e-12)
    assert analysis.pearson([1, 2, None, 4], [2, 4, 7, 8]) == pytest.approx(1.0)  # missing pairs dropped
    assert analysis.pearson([1, 2, 3], [5, 5, 5]) is None  # constant side: undefined
    assert analysis.pearson([1, 2], [1, 2]) is None  # too few points
    assert analysis.geomean([2, 8]) == pytest.approx(4.0)
    assert analysis.median([3, 1, 2, None]) == 2


def test_pearson_in_report_equals_numpy(fixture_report):
    pts = fixture_report["points"]
    rows = fixture_report["summary"]["runs"][0]["analysis"]["correlations"]
    assert {(r["series"], r["metric"]) for r in rows} == {(rt, m) for rt in MS_PER_ACT for m in analysis.METRICS}
    for r in rows:
        ok = _ok(pts, r["series"])
        x = np.array([p[r["metric"]] for p in ok], dtype=float)
        y = np.array([p["latency_ms"] for p in ok])
        assert r["n"] == 15
        assert r["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-10)
        assert r["pearson_r_log"] == pytest.approx(np.corrcoef(np.log(x), np.log(y))[0, 1], rel=1e-10)


# -- the constructed structure is recovered --------------------------------------------------------
def test_fits_recover_constructed_exponents(fixture_report):
    a = fixture_report["summary"]["runs"][0]["analysis"]
    acts = [r for r in a["correlations"] if r["metric"] == "acts"]
    assert len(acts) == 2
    for r in acts:  # latency was built as c * acts * noise
        assert r["exponent"] == pytest.approx(1.0, abs=0.03)
        assert r["coefficient"] == pytest.approx(MS_PER_ACT[r["series"]], rel=0.25)
    assert len(a["exponents"]) == 6
    for r in a["exponents"]:
        theory = (2 - r["alpha"]) / 2  # hand: acts ~ flops^((2-alpha)/2)
        assert r["acts_theory"] == pytest.approx(theory)
        assert r["params_theory"] == pytest.approx((1 + r["alpha"]) / 2)
        assert r["acts_exponent"] == pytest.approx(theory, abs=1e-6)  # complexity built exactly (rounded ints)
        assert r["params_exponent"] == pytest.approx((1 + r["alpha"]) / 2, abs=1e-6)
        assert r["latency_exponent"] == pytest.approx(theory, abs=0.06)  # latency ~ acts ~ flops^theory
        assert (r["s_min"], r["s_max"], r["n"]) == (1, 16, 5)


def test_summary_names_acts_and_fastest(fixture_report):
    a = fixture_report["summary"]["runs"][0]["analysis"]
    assert {s: r["metric"] for s, r in a["best_predictors"].items()} == {"eager": "acts", "openvino": "acts"}
    text = " ".join(fixture_report["summary"]["summary"])
    assert "On eager, latency is best predicted by acts" in text
    assert "acts is the best predictor of latency on 2 of 2 runtimes" in text
    fast = a["fastest_runtime"]
    assert (fast["series"], fast["wins"], fast["models"], fast["reference"]) == ("openvino", 15, 15, "eager")
    ok = {(p["model"], p["runtime"]): p["latency_ms"] for p in _ok(fixture_report["points"])}
    expected = math.exp(np.mean([math.log(ok[(m, "eager")] / ok[(m, "openvino")]) for m, rt in ok if rt == "eager"]))
    assert fast["speedup_vs_reference"] == pytest.approx(expected, rel=1e-12)
    assert fast["speedup_vs_reference"] == pytest.approx(2.0, rel=0.1)
    assert "The fastest runtime is openvino" in text
    # at the largest common s (16) width-only has the fewest activations: 16^0.5 vs 16^(5/6) for dwr
    (strat,) = a["fastest_strategy"]
    assert (strat["s"], strat["fastest"], strat["slowest"]) == (16, "w (alpha=1)", "dwr (alpha=0.333)")
    assert strat["speedup"] == pytest.approx(16 ** (5 / 6 - 1 / 2), rel=0.1)
    assert "point(s) failed the output-parity check" in text and "stayed unstable" in text


def test_ranking_order_and_exclusions(fixture_report):
    a = fixture_report["summary"]["runs"][0]["analysis"]
    ok = _ok(fixture_report["points"])
    assert len(a["ranking"]) == 15  # parity failure and error rows do not create models or series
    for row in a["ranking"]:
        mine = sorted((p["latency_ms"], p["runtime"]) for p in ok if p["model"] == row["model"])
        assert [o["series"] for o in row["order"]] == [rt for _, rt in mine]
        assert row["speedup"] == pytest.approx(
            max(ms for ms, rt in mine if rt == "eager") / mine[0][0], rel=1e-12)
    series = {r["series"] for r in a["correlations"]} | {r["series"] for r in a["roofline"]}
    assert "onnxruntime" not in series
    ov = _ok(fixture_report["points"], "openvino")
    roof = next(r for r in a["roofline"] if r["series"] == "openvino")
    assert roof["eff_layer_median"] == pytest.approx(np.median([p["floor_layer_ms"] / p["latency_ms"] for p in ov]))
    mem = next(r for r in a["memory"] if r["series"] == "openvino")
    assert mem["peak_max_bytes"] == max(p["peak_mem_bytes"] for p in ov)
    assert mem["r_acts"] == pytest.approx(np.corrcoef([p["acts"] for p in ov], [p["peak_mem_bytes"] for p in ov])[0, 1])


# -- files -----------------------------------------------------------------------------------------
def test_report_files_and_csv(fixture_report):
    out, written = fixture_report["out"], fixture_report["written"]
    for name in ("report.md", "report.html", "points.csv", "summary.json"):
        assert (out / name).stat().st_size > 0
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert len(pngs) == 5 and all(p.startswith("run1_") for p in pngs)  # no latency-model plot: no layer counts
    assert {str(v.relative_to(out)) for v in written.values()} >= {f"plots/{p}" for p in pngs}
    with open(out / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(fixture_report["points"]) == 32
    assert {r["status"] for r in rows} == {"ok", "unstable", "parity_failed", "error"}
    md = (out / "report.md").read_text()
    for section in ("## Summary", "## Runs and machines", "### Unavailable runtimes", "### Machine ceilings",
                    "## Latency vs flops, params and activations", "## Scaling exponents against flops",
                    "## Runtimes ranked per model", "## Roofline efficiency", "## Memory", "## Parity failures",
                    "## Unstable points"):
        assert section in md, section
    assert "TensorRT is not installed (pip index lacks it)" in md
    assert "| cpu | Test CPU m1 |" in md  # machine fingerprint, flattened
    assert "| fixture | cpu | fp32 | 2 | 1000.0 | 50.0 |" in md  # ceilings: 1e12 FLOP/s, 5e10 B/s
    assert "max rel err 0.3 > 1e-4" in md


def test_html_is_self_contained(fixture_report):
    page = (fixture_report["out"] / "report.html").read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.I)
    imgs = re.findall(r"""<img[^>]*src="([^"]*)\"""", page)
    assert imgs and len(imgs) == len(list((fixture_report["out"] / "plots").glob("*.png")))
    for ref in refs:
        assert ref.startswith("data:image/png;base64,"), ref[:60]
    for ref in imgs:
        assert base64.b64decode(ref.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert "@import" not in page and "url(" not in page


def test_rewrite_is_deterministic_and_keeps_other_files(fixture_report, tmp_path):
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "plots" / "extra.png").write_bytes(b"keep")
    with Store(fixture_report["db"]) as store:
        write_report(store, [1], out)
    for p in (fixture_report["out"] / "plots").glob("*.png"):
        assert (out / "plots" / p.name).read_bytes() == p.read_bytes(), p.name
    assert (out / "report.md").read_text() == (fixture_report["out"] / "report.md").read_text()
    assert (out / "notes.txt").read_text() == "mine" and (out / "plots" / "extra.png").read_bytes() == b"keep"
    assert not list(out.rglob("*.tmp"))


def test_out_dir_that_is_a_file_is_refused(fixture_report, tmp_path):
    target = tmp_path / "afile"
    target.write_text("precious")
    with Store(fixture_report["db"]) as store, pytest.raises(FsrtError, match="is a file"):
        write_report(store, [1], target)
    assert target.read_text() == "precious"


# -- the CLI, and two runs side by side ------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_latest_run_json(tmp_path):
    db = tmp_path / "runs" / "fsrt.db"
    with Store(db) as store:
        make_run(store, "first", "m1")
        make_run(store, "second", "m2", scale=1.5)
    res = run_fsrt("report", "--db", str(db), "--json")
    assert res.code == 0, res.err
    doc = res.json()  # stdout is exactly one JSON document
    assert [r["name"] for r in doc["runs"]] == ["second"]  # default: the latest run
    out = tmp_path / "runs" / "second" / "report"  # default folder beside the database
    assert json.loads((out / "summary.json").read_text()) == doc
    assert (out / "report.html").exists()
    res = run_fsrt("report", "--db", str(db), "--list", "--json")
    assert [(r["name"], r["n_points"]) for r in res.json()] == [("first", 32), ("second", 32)]


def test_cli_two_machines_side_by_side(tmp_path):
    db = tmp_path / "runs" / "fsrt.db"
    with Store(db) as store:
        make_run(store, "cpu-a", "m1")
        make_run(store, "cpu-b", "m2", scale=1.5)  # same points, every median x1.5, another machine
    res = run_fsrt("report", "cpu-a", "cpu-b", "--db", str(db))
    assert res.code == 0, res.err
    out = tmp_path / "runs" / "compare-cpu-a-cpu-b" / "report"
    assert "written to" in res.out and "cpu-b is 1.50x slower than cpu-a" in res.out
    doc = json.loads((out / "summary.json").read_text())
    assert [r["machine_id"] for r in doc["runs"]] == ["m1", "m2"]
    cmp = doc["comparison"]
    assert len(cmp["rows"]) == 30  # 15 models x 2 runtimes; parity failures and errors are not compared
    for row in cmp["rows"]:
        assert row["ratios"][0] == pytest.approx(1.0)
        assert row["ratios"][1] == pytest.approx(1.5, rel=1e-12)
    assert [e["geomean_ratio"][1] for e in cmp["per_runtime"]] == pytest.approx([1.5, 1.5])
    md = (out / "report.md").read_text()
    assert "## Runs side by side" in md and "| cpu | Test CPU m1 | Test CPU m2 |" in md
    assert "| Base@w:s=16 | openvino | fp32 | 1 |" in md
    assert len(list((out / "plots").glob("compare_*.png"))) == 1
    assert len(list((out / "plots").glob("run*_latency_vs_metrics.png"))) == 2


def test_cli_bad_inputs_exit_2_and_lose_nothing(tmp_path):
    missing = tmp_path / "nope" / "fsrt.db"
    res = run_fsrt("report", "--db", str(missing))
    assert_one_line_error(res, "no results database at", "run fsrt bench first")
    assert not missing.exists() and not missing.parent.exists()

    db = tmp_path / "fsrt.db"
    with Store(db) as store:
        make_run(store)
    before = _sha(db)
    afile = tmp_path / "report.txt"
    afile.write_text("precious")
    assert_one_line_error(run_fsrt("report", "--db", str(db), "--out", str(afile)), "is a file")
    assert afile.read_text() == "precious"
    assert_one_line_error(run_fsrt("report", "no-such-run", "--db", str(db)), "no run 'no-such-run'")
    assert _sha(db) == before

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    before = _sha(corrupt)
    assert_one_line_error(run_fsrt("report", "--db", str(corrupt)), "corrupt")
    assert _sha(corrupt) == before

    newer = tmp_path / "newer.db"
    newer.write_bytes(db.read_bytes())
    con = sqlite3.connect(newer)
    with con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.close()
    before = _sha(newer)
    assert_one_line_error(run_fsrt("report", "--db", str(newer)), "schema version 99")
    assert _sha(newer) == before


def test_cli_empty_database(tmp_path):
    db = tmp_path / "fsrt.db"
    Store(db).close()
    assert_one_line_error(run_fsrt("report", "--db", str(db)), "no runs in")


# -- the page renders in a real browser ------------------------------------------------------------
# CI (.ci/run) installs Debian's chromium and sets FSRT_CI=1, under which a missing browser fails
# instead of skipping: the report is opened by a real browser on every CI run.
def _chromium() -> str:
    import os
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("FSRT_CI") == "1":
            pytest.fail("chromium is not installed, but FSRT_CI=1 requires the browser test to run: "
                        ".ci/run installs it with 'apt-get install chromium' (needs root)")
        pytest.skip("chromium is not installed (CI installs it: see .ci/run)")
    return path


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless chromium with a fresh profile and no network features (works as root too)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


# Observes the page without changing it: records uncaught errors, failed resource loads and
# console.error calls from the start, and after 'load' writes what it saw into the DOM.
_PROBE_HEAD = ("<script>window.__fsrtErrors=[];addEventListener('error',e=>__fsrtErrors.push("
               "e.message||('failed to load '+((e.target&&e.target.alt)||'resource'))),true);"
               "const __ce=console.error;console.error=(...a)=>{__fsrtErrors.push(a.join(' '));__ce(...a)};</script>")
_PROBE_TAIL = ("<script>addEventListener('load',()=>{const imgs=[...document.images];"
               "const bad=imgs.filter(i=>!(i.complete&&i.naturalWidth>0)).map(i=>i.alt);"
               "const p=document.createElement('pre');p.id='fsrt-probe';"
               "p.textContent=JSON.stringify({images:imgs.length,bad:bad,errors:__fsrtErrors});"
               "document.body.appendChild(p);});</script>")


def _probe(page: str, tmp_path: Path, name: str) -> tuple[dict, str]:
    """Load ``page`` (HTML text) in chromium; (what the probe saw, chromium's console log lines)."""
    import html

    head = page.index("<head>") + len("<head>")
    body_end = page.rindex("</body>")
    probed = tmp_path / name
    probed.write_text(page[:head] + _PROBE_HEAD + page[head:body_end] + _PROBE_TAIL + page[body_end:])
    proc = _run_chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="fsrt-probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"chromium did not load the page (rc {proc.returncode}): {proc.stderr[-2000:]}"
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln]
    return json.loads(html.unescape(found.group(1))), "\n".join(console)


def test_html_report_loads_in_chromium_with_every_plot_decoded(fixture_report, tmp_path):
    page = (fixture_report["out"] / "report.html").read_text()
    plots = [k for k in fixture_report["written"] if k.startswith("plots/")]
    assert plots and page.count("<img ") >= len(plots)
    seen, console = _probe(page, tmp_path, "report.html")
    assert seen == {"images": page.count("<img "), "bad": [], "errors": []}, (seen, console)
    assert "Uncaught" not in console and ":ERROR:CONSOLE" not in console, console

    # the probe itself is shown to catch what it is for: one corrupt plot and one console error
    broken = re.sub(r'(src="data:image/png;base64,)([A-Za-z0-9+/]{40})', r"\1" + "A" * 40, page, count=1)
    broken = broken.replace("</body>", "<script>console.error('fsrt probe check')</script></body>")
    seen, _ = _probe(broken, tmp_path, "broken.html")
    assert len(seen["bad"]) == 1 and "fsrt probe check" in seen["errors"], seen


def test_html_report_renders_a_full_page(fixture_report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000",
                  (fixture_report["out"] / "report.html").as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000
    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        colors = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colors is not None and len(colors) > 50  # text, tables and plots drew, not a blank page


def test_run_without_measured_points(tmp_path):
    """A run whose points all failed still gets a report that says so (no plots, no crash)."""
    with Store(tmp_path / "fsrt.db") as store:
        store.add_machine("m", {"cpu": "x"})
        run = store.start_run("failed", "m", {})
        for i, p in enumerate(BAD_POINTS):
            store.put_point(run, "m", str(i), Point.from_row(p))
        written = write_report(store, [run], tmp_path / "out")
    doc = json.loads(written["json"].read_text())
    assert doc["summary"][0] == "No successfully measured points in this run, so there is nothing to fit."
    assert not [k for k in written if k.startswith("plots/")]
    md = written["markdown"].read_text()
    assert "No measured points to correlate." in md and "session failed to load" in md
