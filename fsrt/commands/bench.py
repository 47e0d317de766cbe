"""``fsrt bench``: measure latency across runtimes for a scaling sweep, store it, report it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fsrt.commands.common import err_console, finite_positive, json_option, print_json, resolution_px, thread_count

DEFAULT_STRATEGIES = "dwr,dWr,w"


def _ints(text: str, what: str) -> tuple[int, ...]:
    from fsrt.errors import FsrtError

    if any(not v.strip() for v in text.split(",")):
        raise FsrtError(f"{what} {text!r} has an empty item: give comma-separated integers such as 1,8,32")
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise FsrtError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise FsrtError(f"{what} must be positive integers, got {text!r}")
    return values


def _strategies(alpha: str | None, strategy: str | None):
    from fsrt.errors import FsrtError
    from fsrt.scaling import alpha_strategy, parse_strategy
    from fsrt.sweep import parse_float_list

    out = []
    if alpha:
        for a in parse_float_list(alpha, "--alpha"):
            if not 0 <= a <= 1:
                raise FsrtError(f"alpha must be in [0, 1], got {a:g}")
            out.append(alpha_strategy(a))
    if strategy or not out:
        names = [n.strip() for n in (strategy or DEFAULT_STRATEGIES).split(",") if n.strip()]
        if not names:
            raise FsrtError("--strategy names no strategy; e.g. --strategy dwr,dWr,w")
        out.extend(parse_strategy(n) for n in names)
    return tuple({s.name: s for s in out}.values())


def _device(text: str) -> str:
    from fsrt.errors import FsrtError

    if text == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FsrtError("--device cuda but torch sees no CUDA GPU; use --device cpu")
    elif text != "cpu":
        raise FsrtError(f"--device must be auto, cpu or cuda[:N], got {text!r}")
    return text


@click.command("bench")
@click.argument("models", nargs=-1, metavar="[MODEL ...]")
@click.option("--alpha", default=None, help="Alpha-family strategies, e.g. 0.33,0.8,1 (0.8 is dWr).")
@click.option("--strategy", default=None, help=f"Named strategies, e.g. dwr,dWr,w (default {DEFAULT_STRATEGIES} "
              "when no --alpha).")
@click.option("--sweep", "sweep", default="s=1..4", show_default=True,
              help="Flops multipliers: s=1..32 (doubling), s=1..32x1.5, s=1,2,4.")
@click.option("--runtimes", default="auto", show_default=True,
              help="auto (all available except multi-minute CPU compiles), all, or a list: "
                   "eager,compile,aoti,ort,ort-trt,trt,openvino.")
@click.option("--batch", default="1", show_default=True, help="Batch sizes, e.g. 1,32.")
@click.option("--precision", default="fp32", show_default=True, help="Precisions: fp32, fp16, bf16 (comma list).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--threads", type=int, default=None, callback=thread_count("--threads"),
              help="CPU threads for every runtime (default: all cores).")
@click.option("--resolution", type=int, default=None, callback=resolution_px("--resolution"),
              help="Base resolution before scaling (default: the spec's).")
@click.option("--channels-last", is_flag=True, help="Eager/compile runners use channels_last memory format.")
@click.option("--cuda-graphs", is_flag=True, help="Eager runner replays a captured CUDA graph (GPU only).")
@click.option("--l2", type=click.Choice(["warm", "cold"]), default="warm", show_default=True,
              help="GPU: time with a warm L2, or flush it before every call.")
@click.option("--measure-s", type=float, default=1.5, show_default=True, callback=finite_positive("--measure-s"),
              help="Seconds of timed calls per point.")
@click.option("--warmup-s", type=float, default=0.5, show_default=True, callback=finite_positive("--warmup-s"),
              help="Seconds of warm-up per point.")
@click.option("--cv", "cv_threshold", type=float, default=0.10, show_default=True, callback=finite_positive("--cv"),
              help="Re-measure a point whose coefficient of variation exceeds this.")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("runs/bench"),
              show_default=True, help="Run folder: its name names the run; the report goes to OUT/report.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=Path("runs/fsrt.db"), show_default=True,
              help="Results database (shared by runs and machines).")
@click.option("--no-report", is_flag=True, help="Measure and store only.")
@json_option
def command(models, alpha, strategy, sweep, runtimes, batch, precision, device, threads, resolution, channels_last,
            cuda_graphs, l2, measure_s, warmup_s, cv_threshold, out_dir, db_path, no_report, as_json) -> None:
    """Measure latency of scaled MODELs (default RegNetY-400MF) on every runtime and report it.

    Each (model, strategy, s, batch, precision, runtime) point is checked for output parity
    against a float64 eager reference, timed (warm-up and measurement by time and count,
    median/p90/p99/CV, re-measured when noisy), given roofline floors from this machine's
    measured matmul peak and copy bandwidth, and stored in the results database keyed by a
    machine fingerprint. Rerunning the same command resumes: stored points are not measured
    again. The run ends with a report (Markdown, self-contained HTML, PNG, CSV) in OUT/report.

    \b
    Examples:
      fsrt bench                                   RegNetY-400MF, dwr/dWr/w, s=1,2,4, eager+ort+openvino
      fsrt bench --alpha 0.8 --sweep s=1..32       the fast dWr family up to 32x flops
      fsrt bench EfficientNet-B0 --strategy dwr,w --batch 1,8 --runtimes eager,ort
      fsrt bench --runtimes all --precision fp32,bf16 --out runs/cpu-all
    """
    from fsrt.bench.timing import TimingConfig
    from fsrt.errors import FsrtError, Interrupted
    from fsrt.exporters.precision import get_precision
    from fsrt.scaling import check_s
    from fsrt.sweep import parse_sweep

    if out_dir.exists() and not out_dir.is_dir():
        raise FsrtError(f"--out {out_dir} is a file; give a folder for the run")
    name, s_values = parse_sweep(sweep)
    if name != "s":
        raise FsrtError(f"--sweep must sweep s (the flops multiplier), got {name!r}; e.g. --sweep s=1..32")
    s_values = tuple(check_s(s) for s in s_values)
    precisions = tuple(get_precision(p).name for p in precision.split(",") if p.strip()) or ("fp32",)
    nthreads = threads or os.cpu_count() or 1
    strategies, batches = _strategies(alpha, strategy), _ints(batch, "--batch")
    from fsrt.bench.sweep_run import BenchPlan, plan_variants, run_sweep

    dev = _device(device)
    if cuda_graphs and not dev.startswith("cuda"):
        raise FsrtError(f"--cuda-graphs replays a CUDA graph and needs a GPU, but the device is {dev}; drop it "
                        "or use --device cuda")
    plan = BenchPlan(sources=tuple(models) or ("RegNetY-400MF",), strategies=strategies,
                     s_values=s_values, batches=batches, precisions=precisions, device=dev,
                     threads=nthreads, resolution=resolution, channels_last=channels_last, cuda_graphs=cuda_graphs,
                     timing=TimingConfig(warmup_s=warmup_s, measure_s=measure_s, cv_threshold=cv_threshold, l2=l2))
    variants = plan_variants(plan)  # validates models and strategies before anything is written
    _check_memory(variants, batches, precisions, dev)
    from fsrt.bench.runners import select_runners

    runners, skipped = select_runners(runtimes, dev)
    if not runners:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise FsrtError(f"no requested runtime can run here ({reasons})")
    from fsrt.io import check_writable_folder

    check_writable_folder(out_dir, "the run folder --out")  # before measuring, not after

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fsrt.bench.fingerprint import describe, fingerprint, machine_id
    from fsrt.bench.store import Store

    out = err_console()
    fp = fingerprint()
    mid = machine_id(fp)
    torch.set_num_threads(nthreads)
    total = len(variants) * len(plan.batches) * len(plan.precisions) * len(runners)
    with Store(db_path) as store:
        store.add_machine(mid, fp)
        run_id = store.start_run(out_dir.name, mid, plan.to_config([r.name for r in runners]))
        for rt, why in skipped.items():
            store.set_unavailable(run_id, rt, why)
        if not as_json:
            out.print(f"[bold]fsrt bench[/] run [cyan]{out_dir.name}[/] (id {run_id}) on {describe(fp)}, "
                      f"{nthreads} threads, device {dev}")
            out.print(f"  runtimes: {', '.join(r.name for r in runners)}")
            for rt, why in skipped.items():
                out.print(f"  [dim]skipped {rt}: {why}[/]")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=out, transient=as_json, disable=as_json) as progress:
            task = progress.add_task("measuring", total=total)

            def on_point(label: str, rec: dict | None) -> None:
                if rec is None:
                    progress.update(task, description=f"[dim]{label}[/]")
                    return
                progress.advance(task)
                if rec.get("status") not in ("ok",) and not as_json:
                    progress.console.print(f"  [yellow]{label}: {rec.get('status')}[/] {rec.get('reason') or ''}")

            try:
                records = run_sweep(plan, variants, runners, store, run_id, mid, out_dir / "work", on_point)
            except KeyboardInterrupt as e:
                raise Interrupted("measured points are stored: rerun the same command to resume", by=e) from None
        store.finish_run(run_id)
        paths = {}
        if not no_report:
            from fsrt.bench.report import write_report

            paths = write_report(store, [run_id], out_dir / "report")
    if as_json:
        keep = ("model", "strategy", "s", "runtime", "precision", "batch", "flops", "params", "acts", "median_ms",
                "p90_ms", "cv", "status", "reason", "parity_max_rel", "floor_layer_ms", "peak_mem_bytes")
        print_json({"run_id": run_id, "name": out_dir.name, "db": str(db_path), "machine_id": mid,
                    "unavailable": skipped, "points": [{k: r.get(k) for k in keep} for r in records],
                    "report": {k: str(v) for k, v in paths.items()}})
        return
    _print_table(records)
    if paths:
        out.print(f"report: {paths.get('html', out_dir / 'report')}")


def _check_memory(variants, batches: tuple[int, ...], precisions: tuple[str, ...], device: str) -> None:
    """Refuse, before anything is built, a sweep whose largest model cannot even hold the float64
    reference forward pass every point is checked against (on the CPU), nor one forward pass on
    the GPU, in the memory available."""
    from fsrt.memory_estimate import check_fits, inference_memory

    batch = max(batches)
    worst = max(variants, key=lambda v: inference_memory(v.spec, batch).total_bytes)
    what, advice = f"{worst.name} at {worst.spec.resolution} px, batch {batch}", "lower --resolution, --batch or s"
    check_fits(inference_memory(worst.spec, batch, bytes_per_value=8), "cpu", what + " (float64 reference)", advice)
    if device.startswith("cuda"):
        half = all(p in ("fp16", "bf16") for p in precisions)
        check_fits(inference_memory(worst.spec, batch, bytes_per_value=2 if half else 4), device, what, advice)


def _cell(rec: dict | None) -> str:
    if rec is None:
        return ""
    if rec["status"] in ("ok", "unstable"):
        return f"{rec['median_ms']:.2f}" + ("*" if rec["status"] == "unstable" else "")
    return rec["status"]


def _print_table(records: list[dict]) -> None:
    from rich.table import Table

    from fsrt.commands.common import console
    from fsrt.sizes import human

    runtimes = list(dict.fromkeys(r["runtime"] for r in records))
    table = Table(title="median latency (ms) per runtime")
    for col in ("model", "strategy", "s", "flops", "acts", *runtimes):
        table.add_column(col, justify="left" if col in ("model", "strategy") else "right")
    rows: dict[tuple, dict] = {}
    for r in records:
        key = (r["model"], r["strategy"], r["s"], r["precision"], r["batch"])
        rows.setdefault(key, {"r": r})[r["runtime"]] = r
    for (model, strat, s, _prec, _batch), cells in rows.items():
        base = cells["r"]
        table.add_row(model, strat, f"{s:g}", human(base["flops"]), human(base["acts"]),
                      *(_cell(cells.get(rt)) for rt in runtimes))
    console().print(table)
