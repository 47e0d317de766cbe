"""The README is a contract: every command of its CLI tour, Scaling, Training, Benchmark sweep,
Scaling advice and Export sections runs as written, and produces what the README says it does.

Commands are read from README.md itself (indented lines starting with ``fsrt`` or ``torchrun``;
the text after ``#`` is the README's own comment). Each one must have an entry in ``EXPECT``
below saying how it is checked, so a new README example without a check fails here too.

What the test adds to a command, and only where the README's text allows it:
- training examples take the README's quick-run flags (``--epochs 1``, ``--max-steps N``,
  ``-r 32``; see the Training section) when the example would otherwise train for 100 epochs, at
  224 px, or for minutes; the CLI tour's digits run (the default recipe, 5 epochs) runs in full and
  must learn;
- bench examples take ``--resolution 32``, short ``--measure-s``/``--warmup-s``/``--budget-s`` and
  ``--threads 1`` (the Benchmark section's quick-look flags, each only if ``fsrt bench --help``
  still lists it and the example does not set it itself); the slowest (every runtime, incl. two
  Inductor compiles per point) also ``--sweep s=1``;
- ``fsrt advise`` takes the Scaling advice section's quick-look timing flags when it measures
  (its target stays as written: absolute flops at the model's own resolution), fitted on the
  32 px points the bench examples before it stored;
- ``/data/imagenet`` is a small generated ImageNet-style folder (1000 classes, one image each);
- ``my_spec.yaml`` is the YAML block of the README's "One spec drives everything" section.
Each section runs in a fresh folder, top to bottom, as a reader following it would (its results
database is the default ``runs/fsrt.db`` there).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from fsrt.bench.export_cache import ENV as EXPORT_CACHE_ENV

README = REPO / "README.md"
SECTIONS = ("CLI tour", "Scaling", "Training", "Benchmark sweep", "Scaling advice", "Export")
BIN = Path(sys.executable).parent


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, f"README has no section '## {title}'"
    return m.group(1)


def readme_commands(title: str) -> list[tuple[str, str]]:
    """(command, README comment) for every indented command line of a README section."""
    out = []
    for line in _section(README.read_text(), title).splitlines():
        if not line.startswith("    ") or not line.strip().startswith(("fsrt ", "torchrun ")):
            continue
        cmd, _, comment = line.strip().partition("  #")
        out.append((cmd.strip(), comment.strip()))
    assert out, f"no commands found in README section {title!r}"
    return out


def readme_spec_yaml() -> str:
    m = re.search(r"```yaml\n(.*?)```", _section(README.read_text(), "One spec drives everything"), re.S)
    assert m, "README lost its spec YAML example"
    return m.group(1)


# -- running ---------------------------------------------------------------------------------------
BENCH_QUICK = (("--resolution", "32"), ("--measure-s", "0.02"), ("--warmup-s", "0.01"), ("--budget-s", "2"),
               ("--threads", "1"))
ADVISE_QUICK = (("--measure-s", "0.02"), ("--warmup-s", "0.01"), ("--budget-s", "2"))


def _quick_flags(command: str, args: list[str], wanted) -> list[str]:
    """The README's quick-look flags for ``command`` that its ``--help`` still offers and the
    example does not set itself."""
    helptext = subprocess.run([str(BIN / "fsrt"), command, "--help"], capture_output=True, text=True).stdout
    return [x for flag, value in wanted if flag in helptext and flag not in args for x in (flag, value)]


def _bench_flags(args: list[str]) -> list[str]:
    """The Benchmark section's quick-look flags for a bench example."""
    return _quick_flags("bench", args, BENCH_QUICK)


class Runner:
    """Runs README commands in one folder with the test's additions; keeps what they printed.
    Relative paths in the README (``runs/...``, the default results database ``runs/fsrt.db``)
    land in that folder, so a section's commands share its results as a reader's would."""

    def __init__(self, cwd: Path, data_root: Path | None = None, export_cache: Path | None = None):
        self.cwd, self.data_root = cwd, data_root
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if export_cache is not None:  # the sections share exported graphs, as one reader's machine would
            self.env[EXPORT_CACHE_ENV] = str(export_cache)

    def run(self, cmd: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        args = shlex.split(cmd.replace("/data/imagenet", str(self.data_root)))
        if args[:2] == ["fsrt", "bench"]:
            extra = (*_bench_flags(args), *extra)
        elif args[:2] == ["fsrt", "advise"] and "--no-measure" not in args:
            extra = (*_quick_flags("advise", args, ADVISE_QUICK), *extra)
        return subprocess.run(args + list(extra), cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=1800)


def _ok(proc: subprocess.CompletedProcess, cmd: str) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"README command failed: {cmd}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and lines and lines[-1].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f.lower() in lines[-1].lower(), (f, lines[-1])
    return lines[-1]


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _flops(path: Path) -> int:
    import fsrt

    return fsrt.complexity(fsrt.get_spec(path)).flops


def _report(out: Path) -> list[dict]:
    """The run's report files exist; its points.csv rows."""
    for name in ("report.md", "report.html", "points.csv", "summary.json"):
        assert (out / "report" / name).is_file(), f"missing {out / 'report' / name}"
    assert list((out / "report" / "plots").glob("*.png")), "the report has no plots"
    with open(out / "report" / "points.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["status"] in ("ok", "unstable") for r in rows), [r["status"] for r in rows]
    return rows


def _values(rows: list[dict], column: str) -> set:
    return {float(r[column]) if column == "s" else r[column] for r in rows}


def _theory(alpha: float) -> tuple[str, str]:
    return f"{(1 + alpha) / 2:.3f}", f"{(2 - alpha) / 2:.3f}"


# -- what each command must produce (keyed by the README's exact text) ------------------------------
def check_models(p, r):
    assert "45 models" in p.stdout and all(n in p.stdout for n in ("RegNetZ-4GF", "ResNet-RS-420", "EfficientNet-B5"))


def check_models_json(p, r):
    rows = json.loads(p.stdout)
    assert len(rows) == 12 and {x["family"] for x in rows} == {"regnety"}           # 200MF .. 32GF
    assert all(isinstance(x[k], int) for x in rows for k in ("flops", "params", "acts"))


def check_complexity(p, r):
    assert "401,849,056" in p.stdout and all(f"stage{i}" in p.stdout for i in range(1, 5))   # RegNet paper's 400MF


def check_complexity_json(p, r):
    doc = json.loads(p.stdout)
    assert doc["resolution"] == 160 and all(isinstance(doc[k], int) for k in ("flops", "params", "acts"))
    assert doc["flops"] < 401_849_056 * (160 / 224) ** 2 * 1.05     # my_spec is RegNetY-400MF, now at 160 px


def check_scale_4g(p, r):
    assert abs(_flops(r.cwd / "ry4g.yaml") / 4e9 - 1) <= 0.01


def check_scaling_effnet(p, r):
    assert "fitted" in p.stdout and all(t in p.stdout for a in (0.33, 0.8, 1.0) for t in _theory(a))


def check_train_tour(p, r):
    out = r.cwd / "runs" / "rx200-digits"
    assert {"last.pt", "best.pt", "log.jsonl", "summary.json"} <= {f.name for f in out.iterdir()}
    s = _summary(out)
    assert s["epochs"] == 5 and len((out / "log.jsonl").read_text().splitlines()) == 5
    assert max(s["top1"], s["ema_top1"]) > 0.5, s                              # learns: chance is 0.1


def check_export_tour(p, r):
    import onnx

    model = onnx.load(r.cwd / "regnetx-200mf-fp16.onnx")                     # <model name>[-<precision>].onnx
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]     # dynamic batch, 32 px
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def check_bench_alpha(p, r):
    rows = _report(r.cwd / "runs" / "bench")
    mine = [x for x in rows if x["strategy"] == "alpha=0.8"]
    assert _values(mine, "s") == {1.0, 2.0, 4.0, 8.0, 16.0, 32.0}                   # up to 32x flops
    assert max(float(x["flops_mult"]) for x in mine) > 16                              # realized, after quantization


def check_bench_default(p, r):
    rows = _report(r.cwd / "runs" / "bench")                    # RegNetY-400MF, dwr/dWr/w, s=1,2,4
    assert _values(rows, "base") == {"RegNetY-400MF"} and _values(rows, "s") == {1.0, 2.0, 4.0}
    assert {"dwr", "dWr", "w"} <= _values(rows, "strategy")
    assert {"eager", "ort", "openvino"} <= _values(rows, "runtime")                   # auto: what runs here


def check_report_list(p, r):
    assert "bench" in p.stdout                                                  # the tour's sweep is listed


def check_version(p, r):
    from importlib.metadata import version

    assert p.stdout.startswith("fsrt") and version("fsrt") in p.stdout


def check_realized(p, r):
    assert "realized x3.91" in p.stdout                                         # the README's figure


def check_scale_en(p, r):
    assert abs(_flops(r.cwd / "en_1.6g.yaml") / 1.6e9 - 1) <= 0.01


def check_scale_pycls(p, r):
    doc = json.loads(p.stdout)
    assert doc["s"] == 2 and doc["strategy"]["name"] == "d1_w8_g8_r1" and doc["strategy"]["e_w"] == 0.8


def check_scaling_ry(p, r):
    assert all(t in p.stdout for a in (0.33, 0.8, 1.0) for t in _theory(a))


def check_scaling_json(p, r):
    doc = json.loads(p.stdout)
    text = json.dumps(doc)
    assert all(f'"{n}"' in text for n in ("d", "w", "r", "dWr"))
    n_s = math.floor(math.log(16) / math.log(1.5) + 1e-9) + 1                     # 1, 1.5, ..., 11.4
    assert text.count('"s": ') >= 4 * n_s


def check_sample(p, r):
    rows = [json.loads(x) for x in (r.cwd / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 32 and all(360e6 <= x["flops"] <= 400e6 for x in rows)


def check_train_basic(p, r):
    s = _summary(r.cwd / "runs" / "RegNetX-200MF-digits")                      # the default run folder
    assert s["epochs"] == 10 and s["resolution"] == 32 and s["finished"], s    # "(32 px)"
    assert s["top1"] > 0.3, s                                                  # learns from 30 steps: chance is 0.1


def check_train_imagenet(p, r):
    s = _summary(r.cwd / "runs" / "ry400")
    assert s["num_classes"] == 1000 and s["epochs"] == 1 and s["finished"]


def check_train_resume(p, r):
    assert "resumed" in p.stderr
    assert [json.loads(x)["epoch"] for x in (r.cwd / "runs" / "ry400" / "log.jsonl").read_text().splitlines()] == [1, 2]


def check_train_synthetic(p, r):
    s = json.loads(p.stdout)
    assert s["images_per_s"] > 0 and s["data"] == "synthetic"


def check_torchrun(p, r):
    s = _summary(r.cwd / "runs" / "rx200-ddp")
    assert s["world_size"] == 2 and s["finished"]


def check_bench_threads(p, r):
    rows = _report(r.cwd / "runs" / "bench")
    assert _values(rows, "threads") == {"2"} and _values(rows, "s") == {1.0, 2.0, 4.0}   # all cores, forced


def check_bench_rounds(p, r):
    rows = _report(r.cwd / "runs" / "bench")
    assert _values(rows, "s") == {1.0, 2.0, 4.0}
    assert min(int(x["rounds"]) + int(x["dropped_rounds"] or 0) for x in rows) >= 10   # windows, outliers included


def check_bench_fit_points(p, r):
    rows = _report(r.cwd / "runs" / "bench")                                   # fp16/bf16: ort cannot, skipped
    assert _values(rows, "runtime") == {"ort"} and _values(rows, "s") == {1.0, 2.0, 4.0, 8.0}
    assert {"dwr", "dWr", "w"} <= _values(rows, "strategy")


def check_advise_measured(p, r):
    # the predicted best, dWr and dwr are measured together; speedups with 95% intervals
    rows = _report(r.cwd / "runs" / "advise")
    assert {"dWr", "dwr"} <= _values(rows, "strategy") and _values(rows, "runtime") == {"ort"}
    assert all(abs(float(x["flops"]) / 3.2e9 - 1) < 0.1 for x in rows)                      # at the target
    assert re.search(r"^recommendation: ", p.stdout, re.M), p.stdout[-2000:]
    interval = r"\[\d+\.\d+, \d+\.\d+\]"
    for other in ("dWr", "dwr"):
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("measured: ") and other in ln]
        assert any(re.search(interval, ln) for ln in lines), p.stdout[-2000:]
    assert "## Latency model" in (r.cwd / "runs" / "advise" / "report" / "report.md").read_text()


def check_advise_no_measure(p, r):
    doc = json.loads(p.stdout)
    assert doc["base"] == "EfficientNet-B0" and doc["target_flops"] == 1.6e9 and doc["runtime"] == "ort"
    predicted = [c["predicted_ms"] for c in doc["candidates"] if c["eligible"]]
    assert len(predicted) >= 5 and predicted == sorted(predicted) and all(x > 0 for x in predicted)   # ranked
    assert all(abs(c["flops"] / 1.6e9 - 1) <= 0.05 for c in doc["candidates"] if c["eligible"])
    assert doc["run_id"] is None and doc["report"] is None                     # measured nothing, stored nothing


def check_bench_effnet(p, r):
    rows = [x for x in _report(r.cwd / "runs" / "bench") if x["base"] == "EfficientNet-B0"]
    assert {"dwr", "w"} <= _values(rows, "strategy") and _values(rows, "batch") == {"1", "8"}
    assert _values(rows, "runtime") == {"eager", "ort", "openvino"}


def check_bench_all(p, r):
    out = r.cwd / "runs" / "cpu-all"
    rows = _report(out)
    assert {"eager", "compile", "aoti", "ort", "openvino"} <= _values(rows, "runtime")
    assert _values(rows, "precision") == {"fp32", "bf16"}
    unavailable = json.loads((out / "report" / "summary.json").read_text())["runs"][0]["unavailable"]
    assert {"trt", "ort-trt"} <= set(unavailable) and all(unavailable.values())      # no TensorRT here: said why


def check_bench_gpu(p, r):
    import torch

    if torch.cuda.is_available():
        _report(r.cwd / "runs" / "gpu")
    else:
        _one_line_error(p, "cuda")


def check_export_default(p, r):
    assert (r.cwd / "regnety-400mf.onnx").is_file()


def check_export_dynamic(p, r):
    import onnx

    assert onnx.load(r.cwd / "y400.onnx").graph.input[0].type.tensor_type.shape.dim[0].dim_param


def check_export_ema(p, r):
    import onnx

    model = onnx.load(r.cwd / "rx200-ema.onnx")
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def check_export_json(p, r):
    doc = json.loads(p.stdout)
    assert list(doc["input_shape"]) == [1, 3, 160, 160]


def check_export_trt(p, r):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        _one_line_error(p, "tensorrt")
        assert list(r.cwd.glob("regnety-4*.onnx")), "the ONNX file is still written"
        return
    assert p.returncode == 0


# command text -> (check, extra args the README allows, expected exit: 0, or None when the check decides)
EXPECT = {
    "fsrt models": (check_models, (), 0),
    "fsrt models --family regnety --json": (check_models_json, (), 0),
    "fsrt complexity RegNetY-400MF": (check_complexity, (), 0),
    "fsrt complexity my_spec.yaml -r 160 --json": (check_complexity_json, (), 0),
    "fsrt scale RegNetY-400MF --alpha 0.8 --target-flops 4G -o ry4g.yaml": (check_scale_4g, (), 0),
    "fsrt scaling EfficientNet-B0 --alpha 0.33,0.8,1 --sweep s=1..32": (check_scaling_effnet, (), 0),
    "fsrt train RegNetX-200MF --data digits --epochs 5 --out runs/rx200-digits": (check_train_tour, (), 0),
    "fsrt export runs/rx200-digits/last.pt --dynamic-batch 1:8:32 --precision fp16": (check_export_tour, (), 0),
    "fsrt bench --alpha 0.8 --sweep s=1..32": (check_bench_alpha, (), 0),
    "fsrt advise RegNetY-400MF --target-flops 3.2G --runtime ort": (check_advise_measured, (), 0),
    "fsrt report --list": (check_report_list, (), 0),
    "fsrt --version": (check_version, (), 0),
    "fsrt scale RegNetY-400MF --strategy dWr --s 4": (check_realized, (), 0),
    "fsrt scale EfficientNet-B0 --alpha 0.8 --target-flops 1.6G -o en_1.6g.yaml": (check_scale_en, (), 0),
    "fsrt scale ResNet-50 --strategy d1_w8_g8_r1 --s 2 --json": (check_scale_pycls, (), 0),
    "fsrt scaling RegNetY-400MF --alpha 0.33,0.8,1 --sweep s=1..32": (check_scaling_ry, (), 0),
    "fsrt scaling EfficientNet-B0 --strategy d,w,r,dWr --sweep s=1..16x1.5 --json": (check_scaling_json, (), 0),
    "fsrt sample --space regnet --flops 360M-400M -n 32 --seed 0 -o samples.jsonl": (check_sample, (), 0),
    "fsrt train RegNetX-200MF --data digits --recipe basic --epochs 10": (check_train_basic, ("--max-steps", "3"), 0),
    "fsrt train my_spec.yaml --data /data/imagenet --recipe fast-scaling --out runs/ry400":
        (check_train_imagenet, ("--epochs", "1", "-r", "32"), 0),
    "fsrt train my_spec.yaml --data /data/imagenet --out runs/ry400 --resume":
        (check_train_resume, ("--epochs", "2"), 0),
    "fsrt train RegNetY-400MF --data synthetic --recipe basic --epochs 1 --json":
        (check_train_synthetic, ("-r", "32"), 0),
    "torchrun --nproc-per-node 2 -m fsrt.cli train RegNetX-200MF --data digits --out runs/rx200-ddp":
        (check_torchrun, ("--epochs", "1", "--max-steps", "2"), 0),
    "fsrt bench": (check_bench_default, (), 0),
    "fsrt bench EfficientNet-B0 --strategy dwr,w --batch 1,8 --runtimes eager,ort,openvino":
        (check_bench_effnet, (), 0),
    "fsrt bench --runtimes all --precision fp32,bf16 --out runs/cpu-all": (check_bench_all, ("--sweep", "s=1"), 0),
    "fsrt bench --device cuda --l2 cold --cuda-graphs --out runs/gpu": (check_bench_gpu, (), None),
    "fsrt bench --threads 2 --target-ci 0.01": (check_bench_threads, (), 0),
    "fsrt bench --rounds 10 --budget-s 300": (check_bench_rounds, (), 0),
    "fsrt bench RegNetY-400MF --runtimes ort --sweep s=1..8": (check_bench_fit_points, (), 0),
    "fsrt advise EfficientNet-B0 -t 1.6G --runtime ort --no-measure --json": (check_advise_no_measure, (), 0),
    "fsrt export RegNetY-400MF": (check_export_default, (), 0),
    "fsrt export RegNetY-400MF --dynamic-batch 1:8:32 -o y400.onnx": (check_export_dynamic, (), 0),
    "fsrt export runs/rx200-digits/last.pt --ema --precision fp16 -o rx200-ema.onnx": (check_export_ema, (), 0),
    "fsrt export my_spec.yaml -r 160 --json": (check_export_json, (), 0),
    "fsrt export RegNetY-4.0GF --precision fp16 --trt --workspace 8G --timing-cache y4.cache":
        (check_export_trt, (), None),
}


def test_every_readme_command_has_a_check():
    listed = [cmd for title in SECTIONS for cmd, _ in readme_commands(title)]
    assert sorted(set(listed) - set(EXPECT)) == [], "README commands without a check in EXPECT"
    assert sorted(set(EXPECT) - set(listed)) == [], "checks for commands the README no longer has"


def _imagenet_like(root: Path) -> Path:
    """An ImageNet-style folder: 1000 class folders, one small image each in train/ and val/."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(1000):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / "0.png")
    return root


def _independent(cmd: str) -> bool:
    """A Benchmark sweep example that reads nothing the others wrote (its own model or run folder):
    run in a second test so the section's examples use both test workers."""
    return "EfficientNet-B0" in cmd or "--out runs/" in cmd


def _run_section(title: str, tmp_path: Path, needs: tuple[str, ...] = (), part: bool | None = None,
                 export_cache: Path | None = None) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "my_spec.yaml").write_text(readme_spec_yaml())
    runner = Runner(work, _imagenet_like(tmp_path / "imagenet") if "imagenet" in needs else None, export_cache)
    for prior in needs:
        if prior != "imagenet":
            _ok(runner.run(prior, ("--epochs", "1", "--max-steps", "2")), prior)
    for cmd, _comment in readme_commands(title):
        if part is not None and _independent(cmd) != part:
            continue
        check, extra, code = EXPECT[cmd]
        proc = runner.run(cmd, extra)
        if code == 0:
            _ok(proc, cmd)
        check(proc, runner)


# The Benchmark sweep section is the longest: its independent examples are a second test.
CASES = [(t, None) for t in SECTIONS if t != "Benchmark sweep"] + [("Benchmark sweep", False),
                                                                  ("Benchmark sweep", True)]


@pytest.mark.parametrize(("title", "independent"), CASES,
                         ids=[t + (" (own folders)" if part else "") for t, part in CASES])
def test_readme_section_runs_as_written(title, independent, tmp_path, tmp_path_factory):
    # the Export section uses the CLI tour's run folder; a quick run of that command makes it here
    needs = {"Training": ("imagenet",),
             "Export": ("fsrt train RegNetX-200MF --data digits --epochs 5 --out runs/rx200-digits",)}
    # one export cache for the whole test session (all workers): the sections' sweeps share variants
    session = tmp_path_factory.getbasetemp()
    cache = (session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session) / "export-cache"
    _run_section(title, tmp_path, needs.get(title, ()), independent, cache)
