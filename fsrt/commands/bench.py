"""``fsrt bench``: measure latency across runtimes for a scaling sweep, store it, report it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from fsrt.commands.common import err_console, json_option, print_json
from fsrt.commands.timing_options import timing_configs, timing_options

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


def _threads(text: str) -> int | None:
    """``auto`` -> None (decided by measurement), else 1 up to the CPUs this process may use: more
    threads than CPUs only contend (and thousands cannot even be started)."""
    from fsrt.commands.common import usable_cpus
    from fsrt.errors import FsrtError

    if text.strip().lower() == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise FsrtError(f"--threads must be auto or a positive integer, got {text!r}") from None
    if n <= 0:
        raise FsrtError(f"--threads must be a positive integer, got {n}")
    cpus = usable_cpus()
    if n > cpus:
        raise FsrtError(f"--threads must be at most the {cpus} CPUs this process can use (more threads only "
                        f"contend), got {n}")
    return n


def _plan(models, opts: dict, threads: int, dev: str):
    """The validated ``BenchPlan`` (nothing is written before this succeeds)."""
    from fsrt.bench.plan import BenchPlan
    from fsrt.errors import FsrtError
    from fsrt.scaling import check_s, parse_strategies
    from fsrt.sweep import parse_sweep

    name, s_values = parse_sweep(opts["sweep"])
    if name != "s":
        raise FsrtError(f"--sweep must sweep s (the flops multiplier), got {name!r}; e.g. --sweep s=1..32")
    if opts["resolution"] is not None and opts["resolution"] < 8:
        raise FsrtError(f"--resolution must be at least 8 pixels, got {opts['resolution']}")
    window, rounds = timing_configs(opts)
    strategies = parse_strategies(opts["alpha"], opts["strategy"]) or parse_strategies(strategy=DEFAULT_STRATEGIES)
    modes = _train_defaults(opts, dev)
    return BenchPlan(sources=tuple(models) or ("RegNetY-400MF",), strategies=strategies,
                     s_values=tuple(check_s(s) for s in s_values),
                     batches=_ints(opts["batch"] or "1", "--batch"), device=dev, threads=threads,
                     resolution=opts["resolution"], channels_last=opts["channels_last"],
                     cuda_graphs=opts["cuda_graphs"], window=window, rounds=rounds, **modes)


def _train_defaults(opts: dict, dev: str) -> dict:
    """``--mode`` as plan fields; train mode's defaults where --batch, --precision or --resolution are
    not given: batch 32, the trainer's own AMP precision, and 128 px on CPU (``opts`` is updated)."""
    from fsrt.bench.train_step import TRAIN_BATCH, TRAIN_CPU_RESOLUTION, default_train_precision, parse_modes

    modes = parse_modes(opts["mode"])
    if "train" not in modes:
        return {"modes": modes}
    if opts["resolution"] is None and dev == "cpu":
        opts["resolution"] = TRAIN_CPU_RESOLUTION
    precision_given = (opts["precision"] or "auto").strip().lower() != "auto"
    return {"modes": modes, "train_batches": None if opts["batch"] else (TRAIN_BATCH,),
            "train_precisions": None if precision_given else (default_train_precision(dev),)}


def _decide_threads(store, mid: str, dev: str, out, quiet: bool) -> tuple[int, dict | None]:
    """The thread count for ``--threads auto``: the machine's decision (from this database, else
    from any earlier database on the machine, kept in fsrt's cache folder), or a fresh probe."""
    from fsrt.bench import machine_settings
    from fsrt.bench.lock import measurement_lock
    from fsrt.bench.noise import THREADS_SETTING, probe_threads

    cores = os.cpu_count() or 1
    if dev.startswith("cuda"):
        return cores, None
    stored = store.setting(mid, THREADS_SETTING)
    cached = machine_settings.load(mid, THREADS_SETTING)
    if stored is None and cached is not None:
        stored = cached
        store.put_setting(mid, THREADS_SETTING, stored)
        if not quiet:
            out.print(f"  [dim]thread count from this machine's earlier probe "
                      f"({machine_settings.settings_path(mid)})[/]")
    if stored is None:
        if not quiet:
            out.print("  [dim]probing this machine's noise at 1 and all threads (once per machine)...[/]")
        with measurement_lock(on_wait=lambda who: out.print(f"  [yellow]waiting for {who} to finish measuring[/]")):
            probe = probe_threads(cores)
        stored = probe.to_dict()
        store.put_setting(mid, THREADS_SETTING, stored)
    if cached is None:  # the first decision stays the machine's; a database keeps its own for resuming
        machine_settings.save(mid, THREADS_SETTING, {k: v for k, v in stored.items() if k != "measured"})
    return int(stored["chosen"]), stored


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
@click.option("--mode", default="infer", show_default=True,
              help="What one timed call is: infer (a forward pass), train (a full training step: forward, loss, "
                   "backward, SGD step, as fsrt train runs it; eager and compile only), or both.")
@click.option("--batch", default=None, help="Batch sizes, e.g. 1,32 [default: 1; train mode: 32].")
@click.option("--precision", default="auto", show_default=True,
              help="auto: fp32 at every point, plus each half precision a runtime computes natively on this "
                   "machine (bf16 on CPUs with bf16 units, fp16 with fp16 units) at the smallest s, with its "
                   "speedup and accuracy cost; or a list of fp32, fp16, bf16 measured at every point. Train "
                   "steps under auto use the trainer's AMP policy (fp32 on CPU, bf16/fp16 autocast on GPU).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--threads", "threads_text", default="auto", show_default=True,
              help="CPU threads for every runtime. auto: measured once per machine (1 thread where all cores "
                   "make timings irreproducible, as on small shared VMs), stored and reused.")
@click.option("--resolution", type=int, default=None,
              help="Base resolution before scaling (default: the spec's; with train mode on CPU: 128).")
@click.option("--channels-last", is_flag=True, help="Eager/compile runners use channels_last memory format.")
@click.option("--cuda-graphs", is_flag=True, help="Eager runner replays a captured CUDA graph (GPU only).")
@timing_options
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("runs/bench"),
              show_default=True, help="Run folder: its name names the run; the report goes to OUT/report.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=Path("runs/fsrt.db"), show_default=True,
              help="Results database (shared by runs and machines).")
@click.option("--no-report", is_flag=True, help="Measure and store only.")
@json_option
def command(models, threads_text, out_dir, db_path, no_report, as_json, device, **opts) -> None:
    """Measure latency of scaled MODELs (default RegNetY-400MF) on every runtime and report it.

    Each (model, strategy, s, batch, precision, runtime) point is prepared in its runtime's own
    worker process and checked: the outputs of the exact call that is timed must match a float64
    eager reference. Then all points are timed together in interleaved rounds: each round visits
    every point still measuring, in a fresh random order, for one short window; a point's figure
    is the interquartile mean of all its timed calls, with a 95% confidence interval.
    A point stops when its interval is within --target-ci; a window far from the point's others
    is dropped and measured again. Points are stored in the results database keyed by a machine
    fingerprint and by every setting that changes what is measured, so rerunning the same
    command resumes. The run ends with a report (Markdown, HTML, PNG, CSV) in OUT/report that
    states every comparison as a ratio with its interval, and the machine's measured noise.

    \b
    Examples:
      fsrt bench                                   RegNetY-400MF, dwr/dWr/w, s=1,2,4, eager+ort+openvino,
                                                   fp32 + the half precisions this machine runs natively
      fsrt bench --alpha 0.8 --sweep s=1..32       the fast dWr family up to 32x flops
      fsrt bench EfficientNet-B0 --strategy dwr,w --batch 1,8 --runtimes eager,ort
      fsrt bench --threads 2 --target-ci 0.01      all cores, a tighter interval
      fsrt bench --runtimes all --precision fp32,bf16 --out runs/cpu-all
      fsrt bench --mode both --runtimes eager      inference and training steps of the same models
    """
    from fsrt.errors import FsrtError

    if out_dir.exists() and not out_dir.is_dir():
        raise FsrtError(f"--out {out_dir} is a file; give a folder for the run")
    from fsrt.bench.precision_support import parse_precisions, resolve_precisions
    from fsrt.device import resolve_device, use_device

    threads = _threads(threads_text)
    requested = parse_precisions(opts["precision"])
    dev = str(resolve_device(device))
    use_device(dev)  # the coordinator's ceilings and references run on it too
    if opts["cuda_graphs"] and not dev.startswith("cuda"):
        raise FsrtError(f"--cuda-graphs replays a CUDA graph and needs a GPU, but the device is {dev}; drop it "
                        "or use --device cuda")
    plan = _plan(models, opts, threads or 1, dev)
    from fsrt.bench.plan import plan_variants
    from fsrt.bench.runners import select_runners

    variants = plan_variants(plan)  # validates models and strategies before anything is written
    runners, skipped = select_runners(opts["runtimes"], dev)
    if not runners:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise FsrtError(f"no requested runtime can run here ({reasons})")
    plan, not_native = resolve_precisions(plan, requested, [r.name for r in runners])
    skipped.update(not_native)
    skipped.update(_cannot_train(plan, [r.name for r in runners]))
    _check_memory(plan, variants)
    from fsrt.io import check_writable_folder

    check_writable_folder(out_dir, "the run folder --out")  # before measuring, not after
    _run(plan, threads, [r.name for r in runners], skipped, out_dir, db_path, no_report, as_json)


def _check_memory(plan, variants) -> None:
    """Refuse, before anything is built, a sweep whose largest model cannot fit in the memory
    available: every point is checked against a float64 reference computed on the CPU (a forward
    pass, or a training step), and on a GPU the timed call itself must fit there too."""
    from fsrt.memory_estimate import check_fits, inference_memory, training_memory

    advice = "lower --resolution, --batch or s"
    for mode, estimate, suffix in (("infer", inference_memory, ""), ("train", training_memory, ", training step")):
        if mode not in plan.modes:
            continue
        batch = max(plan.batches_for(mode))
        worst = max(variants, key=lambda v: estimate(v.spec, batch).total_bytes)
        what = f"{worst.name} at {worst.spec.resolution} px, batch {batch}{suffix}"
        check_fits(estimate(worst.spec, batch, bytes_per_value=8), "cpu", what + " (float64 reference)", advice)
        if plan.device.startswith("cuda"):
            half = all(p in ("fp16", "bf16") for p in plan.precisions_for(mode))
            check_fits(estimate(worst.spec, batch, bytes_per_value=2 if half else 4), plan.device, what, advice)


def _cannot_train(plan, runtimes: list[str]) -> dict[str, str]:
    """``{"<runtime> (train)": reason}`` for the selected runtimes that cannot time training steps;
    an error when train is the only mode and none can."""
    from fsrt.bench.train_step import train_unavailable_reason
    from fsrt.errors import FsrtError

    if "train" not in plan.modes:
        return {}
    out = {f"{rt} (train)": why for rt in runtimes if (why := train_unavailable_reason(rt))}
    if len(out) == len(runtimes) and plan.modes == ("train",):
        raise FsrtError(f"no requested runtime can time training steps ({'; '.join(out.values())})")
    return out


def _run(plan, threads, runtimes, skipped, out_dir, db_path, no_report, as_json) -> None:
    import dataclasses

    import torch

    from fsrt.bench.fingerprint import describe, fingerprint, machine_id
    from fsrt.bench.plan import plan_variants
    from fsrt.bench.store import Store
    from fsrt.bench.sweep_run import run_sweep
    from fsrt.errors import Interrupted

    out = err_console()
    fp = fingerprint()
    mid = machine_id(fp)
    with Store(db_path) as store:
        store.add_machine(mid, fp)
        probe = None
        if threads is None:
            threads, probe = _decide_threads(store, mid, plan.device, out, as_json)
        plan = dataclasses.replace(plan, threads=threads)
        torch.set_num_threads(threads)
        run_id = store.start_run(out_dir.name, mid, plan.to_config(runtimes))
        for rt, why in skipped.items():
            store.set_unavailable(run_id, rt, why)
        if not as_json:
            how = f" ({probe['rule']})" if probe else ""
            out.print(f"[bold]fsrt bench[/] run [cyan]{out_dir.name}[/] (id {run_id}) on {describe(fp)}, "
                      f"device {plan.device}, {threads} thread(s){how}")
            out.print(f"  runtimes: {', '.join(runtimes)}")
            half = "" if plan.half_at_s is None else f" (half precisions at s={plan.half_at_s:g})"
            out.print(f"  precisions: {', '.join(plan.precisions)}{half}")
            if "train" in plan.modes:
                out.print(f"  train steps: batch {','.join(map(str, plan.batches_for('train')))}, "
                          f"{','.join(plan.precisions_for('train'))}, resolution {plan.resolution or 'of the spec'}")
            for rt, why in skipped.items():
                out.print(f"  [dim]skipped {rt}: {why}[/]")
        variants = plan_variants(plan)
        with _progress(out, as_json) as progress:
            try:
                points = run_sweep(plan, variants, runtimes, store, run_id, mid, out_dir / "work", progress)
            except KeyboardInterrupt as e:
                raise Interrupted("measured windows and points are stored: rerun the same command to resume",
                                  by=e) from None
        store.finish_run(run_id)
        between = _between_runs(store, mid, db_path, run_id, points)
        paths = {}
        if not no_report:
            from fsrt.bench.report import write_report

            paths = write_report(store, [run_id], out_dir / "report")
    if as_json:
        print_json(_json_doc(run_id, out_dir, db_path, mid, threads, skipped, points, paths, between))
        return
    _print_table(points)
    from fsrt.bench.machine_history import NOT_MEASURED

    out.print(f"[dim]{between.sentence() if between else NOT_MEASURED}[/]")
    if paths:
        out.print(f"report: {paths.get('html', out_dir / 'report')}")


JSON_FIELDS = ("model", "strategy", "s", "runtime", "mode", "precision", "batch", "resolution", "flops", "params",
               "acts", "latency_ms", "latency_lo_ms", "latency_hi_ms", "rounds", "dropped_rounds", "median_ms",
               "p90_ms", "cv", "status", "reason", "note", "parity_max_rel", "parity_rel_l2", "parity_expected",
               "floor_layer_ms", "peak_mem_bytes", "mem_kind", "forward_ms", "forward_lo_ms", "forward_hi_ms",
               "backward_ms", "backward_lo_ms", "backward_hi_ms")


def _between_runs(store, mid: str, db_path: Path, run_id: int, points):
    """Add this finished run to the machine's run history and keep the machine's measured movement
    between runs in the database (for the report); None while no two kept runs share measurements."""
    from fsrt.bench.machine_history import SETTING, record_run

    between = record_run(mid, f"{Path(db_path).resolve()}#{run_id}", points)
    if between is not None:
        store.put_setting(mid, SETTING, between.to_dict())
    return between


def _json_doc(run_id, out_dir, db_path, mid, threads, skipped, points, paths, between) -> dict:
    return {"run_id": run_id, "name": out_dir.name, "db": str(db_path), "machine_id": mid, "threads": threads,
            "unavailable": skipped, "between_runs": between.to_dict() if between else None,
            "points": [{k: (str(v) if k == "status" else v) for k, v in p.to_dict().items() if k in JSON_FIELDS}
                       for p in points],
            "report": {k: str(v) for k, v in paths.items()}}


class _progress:
    """Rich progress for the sweep's phases (silent under --json)."""

    def __init__(self, console, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from fsrt.bench.points import Status
        from fsrt.bench.sweep_run import SweepProgress

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=quiet, disable=quiet)
        progress, quiet_ = self.progress, quiet

        class _Reporter(SweepProgress):
            task = None
            told: set = set()

            def phase(self, name, total):
                if self.task is not None:
                    progress.update(self.task, visible=False)
                self.task = progress.add_task(name, total=total)

            def step(self, label):
                progress.advance(self.task)

            def point(self, p):
                if p.measurement_id in self.told:
                    return
                self.told.add(p.measurement_id)
                if p.status not in (Status.OK, "ok") and not quiet_:
                    what = p.reason or (f"interval +-{100 * p.ci_rel:.1f}%" if p.ci_rel else "")
                    progress.console.print(f"  [yellow]{p.model} {_column(p)} {p.precision} b{p.batch}: "
                                           f"{p.status}[/] {what}")

            def waiting(self, holder):
                progress.console.print(f"  [yellow]waiting: another fsrt measurement ({holder}) is running on this "
                                       "machine; timings taken together would be wrong[/]")

        self.reporter = _Reporter()

    def __enter__(self):
        self.progress.__enter__()
        return self.reporter

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


def _cell(p) -> str:
    if p is None:
        return ""
    if p.measured:
        ci = f" ±{100 * p.ci_rel:.1f}%" if p.ci_rel is not None else ""
        return f"{p.latency_ms:.2f}{ci}" + ("*" if p.status == "unstable" else "")
    return str(p.status)


def _column(p) -> str:
    """A runtime's column: its name, plus "train" for training-step points."""
    return p.runtime if (p.mode or "infer") == "infer" else f"{p.runtime} {p.mode}"


def _print_table(points) -> None:
    from rich.table import Table

    from fsrt.commands.common import console
    from fsrt.sizes import human

    columns = list(dict.fromkeys(_column(p) for p in points))
    multi_precision = len({p.precision for p in points}) > 1
    batches = len({p.batch for p in points}) > 1
    table = Table(title="latency (ms, interquartile mean of the timed calls, 95% interval within this run; "
                        "* = interval above target; train: one training step)")
    extra = (("precision",) if multi_precision else ()) + (("batch",) if batches else ())
    for col in ("model", "strategy", "s", *extra, "flops", "acts", *columns):
        table.add_column(col, justify="left" if col in ("model", "strategy", "precision") else "right")
    # one row per measured network: the unscaled base model is listed once, with every strategy it serves
    rows: dict[tuple, dict] = {}
    for p in points:
        row = rows.setdefault((p.model, p.s, p.precision, p.batch), {"p": p, "strategies": {}})
        row["strategies"][p.strategy] = None
        row[_column(p)] = p
    for (model, s, prec, batch), cells in rows.items():
        base = cells["p"]
        shown = ((prec,) if multi_precision else ()) + ((str(batch),) if batches else ())
        table.add_row(model, ", ".join(map(str, cells["strategies"])), f"{s:g}", *shown, human(base.flops),
                      human(base.acts), *(_cell(cells.get(col)) for col in columns))
    console().print(table)
