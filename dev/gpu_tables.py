"""The tables of a GPU run's note, from ``dev/gpu_check.sh``'s results (gpu-results.tgz, unpacked).

Reads RESULTS/logs: each bench phase's ``fsrt bench --json`` document (fig2, graphs, l2cold,
compile, others, train, aoti), kernels.json, patched.json and setup.txt, and prints Markdown:

- Figure 2: Pearson r (linear scale, as the scaling paper) of latency against flops, params and
  acts, per run and model over its measured scaled versions, and over all of the run's models;
  computed here with numpy, apart from the report's own analysis, so the two check each other;
- CUDA graphs and cold L2: each point's figure over fig2's eager figure (same model, strategy, s);
- the kernel table: layer, group width, batch, cuDNN and Triton times, their ratio, achieved GB/s
  and % of the measured copy bandwidth, and the direct and GEMM paths' times;
- the whole patched model against cuDNN, and every run's statuses and unavailable runtimes.

    python dev/gpu_tables.py /tmp/gpu          # after: mkdir /tmp/gpu; tar xzf gpu-results.tgz -C /tmp/gpu
    python dev/gpu_tables.py /tmp/gpu --json
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from devcli import emit, fail, parser

BENCH_PHASES = ("fig2", "graphs", "l2cold", "compile", "others", "train", "aoti")
METRICS = ("flops", "params", "acts")


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def measured(doc: dict) -> list[dict]:
    """Distinct measured points of a bench document (a point listed under two strategies counts once)."""
    seen, out = set(), []
    for p in doc.get("points", []):
        key = (p["model"], p["runtime"], p["mode"], p["precision"], p["batch"], p["flops"], p["params"], p["acts"])
        if p["status"] in ("ok", "unstable") and p["latency_ms"] and key not in seen:
            seen.add(key)
            out.append(p)
    return out


def base_model(p: dict) -> str:
    """The zoo model a point's variant was scaled from (variants are named ``base@strategy:s=...``)."""
    return p["model"].split("@")[0]


def pearson_rows(phase: str, points: list[dict]) -> list[dict]:
    """r of latency against each metric per (runtime, mode, model) and over all models (numpy)."""
    import numpy as np

    groups = defaultdict(list)
    for p in points:
        groups[(p["runtime"], p["mode"], base_model(p))].append(p)
        groups[(p["runtime"], p["mode"], "all models")].append(p)
    rows = []
    for (runtime, mode, model), pts in sorted(groups.items()):
        lat = np.array([p["latency_ms"] for p in pts])
        row = dict(run=phase, runtime=runtime, mode=mode, model=model, n=len(pts))
        for m in METRICS:
            x = np.array([p[m] for p in pts], dtype=float)
            row[m] = float(np.corrcoef(x, lat)[0, 1]) if len(pts) >= 3 and x.std() > 0 else None
        rows.append(row)
    return rows


def effect_rows(base: list[dict], other: list[dict], what: str) -> list[dict]:
    """Each point of ``other`` over the ``base`` point of the same model, strategy and s."""
    index = {(p["model"], p["strategy"], p["s"]): p for p in base}
    rows = []
    for p in other:
        b = index.get((p["model"], p["strategy"], p["s"]))
        if b:
            rows.append(dict(effect=what, model=base_model(p), strategy=p["strategy"], s=p["s"],
                             base_ms=b["latency_ms"], ms=p["latency_ms"], ratio=p["latency_ms"] / b["latency_ms"]))
    return rows


def collect(root: Path) -> dict:
    """Every table as one JSON-able document."""
    logs = root / "logs"
    docs = {ph: _load(logs / f"{ph}.txt") for ph in BENCH_PHASES}
    points = {ph: measured(d) for ph, d in docs.items() if d}
    runs = [dict(run=ph, statuses=dict(Counter(f"{p['runtime']} {p['status']}" for p in d.get("points", []))),
                 unavailable=d.get("unavailable") or {}) for ph, d in docs.items() if d]  # fmt: skip
    effects = []
    for ph, what in (("graphs", "CUDA graph / eager"), ("l2cold", "L2 cold / warm")):
        if "fig2" in points and ph in points:
            effects += effect_rows(points["fig2"], points[ph], what)
    setup = logs / "setup.txt"
    return dict(setup=setup.read_text() if setup.exists() else None, runs=runs,
                figure2=[r for ph, pts in points.items() for r in pearson_rows(ph, pts)], effects=effects,
                kernels=_load(logs / "kernels.json"), patched=_load(logs / "patched.json"))  # fmt: skip


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def _print_kernels(k: dict) -> None:
    print(f"\n## Triton grouped conv vs cuDNN ({k['device']}, copy bandwidth {k['copy_gbs']:.0f} GB/s, L2 cold)\n")
    cols = ("model", "layer CxH", "g.w.", "k/s", "N", "cuDNN us", "Triton us", "ratio", "GB/s", "% copy", "path",
            "direct us", "gemm us")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in k["results"]:
        d, g = (f"{r[key] * 1e3:.1f}" if key in r else "-" for key in ("direct_ms", "gemm_ms"))
        print(f"| {r['model']} | {r['c']}x{r['h']} | {r['group_width']} | {r['k']}/{r['stride']} | {r['batch']} | "
              f"{r['cudnn_ms'] * 1e3:.1f} | {r['auto_ms'] * 1e3:.1f} | {r['auto_ratio']:.2f} | {r['auto_gbs']:.0f} | "
              f"{100 * r['auto_gbs'] / k['copy_gbs']:.0f} | {r['auto_path']} | {d} | {g} |")


def _print(doc: dict) -> None:
    if doc["setup"]:
        print("## Device and versions\n\n```\n" + doc["setup"].strip() + "\n```")
    print("\n## Figure 2: Pearson r of latency (linear scale)\n")
    print("| run | runtime | mode | model | n | flops | params | acts |\n|---|---|---|---|---|---|---|---|")
    for r in doc["figure2"]:
        print(f"| {r['run']} | {r['runtime']} | {r['mode']} | {r['model']} | {r['n']} | "
              + " | ".join(_fmt(r[m]) for m in METRICS) + " |")
    if doc["effects"]:
        print("\n## CUDA graphs and cold L2, per point\n\n| effect | model | strategy | s | eager ms | ms | ratio |")
        print("|---|---|---|---|---|---|---|")
        for r in doc["effects"]:
            print(f"| {r['effect']} | {r['model']} | {r['strategy']} | {r['s']:g} | {r['base_ms']:.3f} | "
                  f"{r['ms']:.3f} | {r['ratio']:.3f} |")
    if doc["kernels"]:
        _print_kernels(doc["kernels"])
    p = doc["patched"]
    if p:
        print(f"\n## {p['model']} patched ({p['patched_layers']} grouped convs) vs cuDNN, {p['dtype']}\n")
        print("| batch | cuDNN ms | patched ms | speedup | per-round range | rel err |\n|---|---|---|---|---|---|")
        for r in p["results"]:
            print(f"| {r['batch']} | {r['cudnn_ms']:.3f} | {r['patched_ms']:.3f} | {r['speedup']:.3f} | "
                  f"{r['speedup_min']:.3f}-{r['speedup_max']:.3f} | {r['rel_err']:.1e} |")
    print("\n## Runs\n")
    for r in doc["runs"]:
        print(f"- {r['run']}: {r['statuses']}; unavailable: {r['unavailable'] or 'none'}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python dev/gpu_tables.py RESULTS``."""
    ap = parser(__doc__)
    ap.add_argument("results", help="folder holding the unpacked gpu-results.tgz (logs/ and runs/)")
    args = ap.parse_args(argv)  # --quick changes nothing: the script only reads files
    root = Path(args.results)
    if not (root / "logs").is_dir():
        return fail(f"{root} has no logs/ folder: unpack gpu-results.tgz there first (tar xzf gpu-results.tgz -C DIR)")
    emit(collect(root), args.json, _print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
