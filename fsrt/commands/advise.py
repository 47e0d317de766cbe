"""``fsrt advise``: which scaling strategy is fastest at a flops budget on this machine and runtime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from fsrt.commands.common import console, err_console, json_option, print_json
from fsrt.commands.timing_options import timing_configs, timing_options


@click.command("advise")
@click.argument("base", metavar="BASE")
@click.option("--target-flops", "-t", required=True, metavar="SIZE",
              help="Flops (multiply-adds) to scale BASE to, e.g. 3.2G or 4GF.")
@click.option("--runtime", default="ort", show_default=True,
              help="One runtime: eager, compile, aoti, ort, ort-trt, trt or openvino.")
@click.option("--precision", default="fp32", show_default=True, help="fp32, fp16 or bf16.")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size.")
@click.option("--threads", "threads_text", default="auto", show_default=True,
              help="CPU threads: auto uses the count fsrt bench decided for this machine.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--resolution", type=int, default=None, help="BASE's resolution before scaling (as fsrt bench).")
@click.option("--alpha", "alphas", default="0..1x0.1", show_default=True,
              help="Alpha-family candidates: a list (0.5,0.8) or a range START..STOPxSTEP.")
@click.option("--strategy", "strategies", default="d,w,r,dw,dr,wr,dwr,dWr", show_default=True,
              help="Named strategies that are also candidates.")
@click.option("--tolerance", type=float, default=0.05, show_default=True,
              help="A candidate competes only if its quantized flops land within this fraction of the target.")
@click.option("--no-measure", is_flag=True, help="Predict and rank only: measure nothing, store nothing.")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("runs/advise"),
              show_default=True, help="Run folder: its name names the run; the report goes to OUT/report.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=Path("runs/fsrt.db"), show_default=True,
              help="Results database: the latency model is fitted on the points stored here.")
@click.option("--no-report", is_flag=True, help="Measure and store, write no report.")
@timing_options
@json_option
def command(base, target_flops, runtime, precision, batch, threads_text, device, resolution, alphas, strategies,
            tolerance, no_measure, out_dir, db_path, no_report, as_json, **timing) -> None:
    """Recommend how to scale BASE to --target-flops for the fastest latency on this machine.

    A latency model is fitted on every point fsrt bench stored for this machine and runtime
    configuration: latency = flops / F + activation bytes / B + weight bytes / B' + layers x t
    + constant, with non-negative costs, shown as achieved GFLOP/s, GB/s and microseconds, and
    checked on points it did not see (small members predicting large ones, each strategy from the
    others, each model left out). Each candidate strategy (the alpha family and the named ones)
    is scaled to the exact quantized network at the target flops; the model predicts and ranks
    them. Then the predicted best, dWr and dwr are measured together in interleaved rounds (stored
    like any bench point) and the recommendation's measured speedups over dWr and dwr are shown
    with their 95% intervals ("not resolved" when an interval includes 1). The timing options
    (--measure-s, --rounds, --target-ci, --budget-s, ...) are fsrt bench's, with its defaults.

    \b
    Examples:
      fsrt bench RegNetY-400MF --runtimes ort --sweep s=1..8     measure first (once)
      fsrt advise RegNetY-400MF --target-flops 3.2G --runtime ort
      fsrt advise EfficientNet-B0 -t 1.6G --runtime openvino --no-measure --json
    """
    from fsrt.bench.advise import Question
    from fsrt.errors import FsrtError

    if out_dir.exists() and not out_dir.is_dir():
        raise FsrtError(f"--out {out_dir} is a file; give a folder for the run")
    question, spec, candidates = _question(base, target_flops, runtime, precision, batch, threads_text, device,
                                           resolution, alphas, strategies, tolerance)
    window, rounds = timing_configs(timing)
    if not db_path.is_file():
        raise FsrtError(f"no results database at {db_path}: nothing to fit a latency model on; run first: "
                        f"{_bench_hint(question, db_path)}")
    if not no_measure:
        from fsrt.io import check_writable_folder

        check_writable_folder(out_dir, "the run folder --out")  # before measuring, not after
    from fsrt.bench.fingerprint import fingerprint, machine_id
    from fsrt.bench.store import Store

    with Store(db_path) as store:
        mid = machine_id(fingerprint())
        stored = store.machine_points(mid)
        if question.threads is None:
            question = Question(**{**question.__dict__, "threads": _auto_threads(store, mid, stored, question)})
        try:
            from fsrt.bench.advise import predict

            advice = predict(question, spec, stored, mid, candidates)
        except FsrtError as e:
            if "latency model needs" in str(e):
                raise FsrtError(f"{e}: run first: {_bench_hint(question, db_path)}") from None
            raise
        report = None
        if not no_measure:
            report = _measure(advice, spec, store, mid, out_dir, no_report, as_json, (window, rounds))
    if as_json:
        doc = advice.to_dict()
        doc["report"] = str(report) if report else None
        print_json(doc)
        return
    _print(advice, report)


def _question(base, target_flops, runtime, precision, batch, threads_text, device, resolution, alphas, strategies,
              tolerance):
    """Validate every option before anything is opened or written."""
    from fsrt.bench.advise import Question
    from fsrt.bench.runners import select_runners
    from fsrt.commands.bench import _threads
    from fsrt.complexity import complexity
    from fsrt.device import resolve_device, use_device
    from fsrt.errors import FsrtError
    from fsrt.precision import get_precision
    from fsrt.sizes import human, parse_count
    from fsrt.source import get_spec

    target = parse_count(target_flops, "--target-flops")
    if not 0 < tolerance < 1:
        raise FsrtError(f"--tolerance must be a fraction between 0 and 1, got {tolerance:g}")
    if batch <= 0:
        raise FsrtError(f"--batch must be a positive integer, got {batch}")
    if resolution is not None and resolution < 8:
        raise FsrtError(f"--resolution must be at least 8 pixels, got {resolution}")
    prec = get_precision(precision).name
    dev = str(resolve_device(device))
    use_device(dev)
    name = runtime.strip().lower()
    if name in ("auto", "all") or "," in name:
        raise FsrtError(f"--runtime takes one runtime name, got {runtime!r}")
    runners, skipped = select_runners(name, dev)
    if not runners:
        raise FsrtError(f"runtime {name} cannot run here: {skipped.get(name, 'unavailable')}")
    spec = get_spec(base)
    if resolution:
        spec = spec.replace(resolution=resolution)
    base_flops = complexity(spec).flops
    if not target > base_flops:
        raise FsrtError(f"--target-flops {human(target)} is not above {spec.name or base}'s {human(base_flops)} "
                        f"flops: advise scales a network up; give a target above {human(base_flops)}")
    cands = _candidates(alphas, strategies)
    threads = _threads(threads_text)
    return (Question(str(base), target, name, prec, batch, threads, dev, resolution, tolerance=tolerance), spec, cands)


def _candidates(alphas: str, strategies: str):
    """The candidate strategies: the named ones first, then the alpha grid."""
    from fsrt.errors import FsrtError
    from fsrt.scaling import alpha_strategy, parse_strategy

    named = [parse_strategy(n.strip()) for n in strategies.split(",") if n.strip()]
    out = named + [alpha_strategy(a) for a in _alpha_grid(alphas)]
    if not out:
        raise FsrtError("no candidate strategies: give --alpha and/or --strategy")
    return out


def _alpha_grid(text: str) -> list[float]:
    from fsrt.errors import FsrtError
    from fsrt.sweep import parse_float_list

    text = (text or "").strip()
    if not text:
        return []
    if ".." in text:
        start, _, rest = text.partition("..")
        stop, _, step = rest.partition("x")
        try:
            a, b, d = float(start), float(stop), float(step or 0.1)
        except ValueError:
            raise FsrtError(f"cannot read --alpha {text!r}: use a list (0.5,0.8) or START..STOPxSTEP") from None
        if d <= 0:
            raise FsrtError(f"--alpha step must be positive, got {d:g}")
        grid = [round(a + i * d, 10) for i in range(int((b - a) / d + 1e-9) + 1)]
    else:
        grid = parse_float_list(text, "--alpha")
    bad = [a for a in grid if not 0 <= a <= 1]
    if bad:
        raise FsrtError(f"alpha must be in [0, 1], got {bad[0]:g}")
    return grid


def _auto_threads(store, mid: str, stored, question) -> int:
    """The machine's stored thread decision, else the thread count most of the series' points have."""
    from fsrt.bench.noise import THREADS_SETTING

    setting = store.setting(mid, THREADS_SETTING)
    if setting is not None:
        return int(setting["chosen"])
    counts = Counter(p.threads for p in stored if p.runtime == question.runtime and p.threads)
    return counts.most_common(1)[0][0] if counts else 1


def _bench_hint(q, db_path: Path) -> str:
    """The fsrt bench command that stores enough points for this question."""
    parts = ["fsrt bench", q.source, "--runtimes", q.runtime, "--sweep s=1..8"]
    if q.precision != "fp32":
        parts += ["--precision", q.precision]
    if q.batch != 1:
        parts += ["--batch", str(q.batch)]
    if q.threads:
        parts += ["--threads", str(q.threads)]
    if q.resolution:
        parts += ["--resolution", str(q.resolution)]
    if str(db_path) != "runs/fsrt.db":
        parts += ["--db", str(db_path)]
    return " ".join(parts)


def _measure(advice, spec, store, mid, out_dir: Path, no_report: bool, quiet: bool, timing: tuple):
    """Measure the chosen networks with the real sweep (``timing``: its window and round settings),
    compare them, and write the report."""
    from fsrt.bench.advise import compare_measured, measure_plan, run_config, variants
    from fsrt.bench.sweep_run import run_sweep
    from fsrt.commands.bench import _between_runs, _check_memory, _progress
    from fsrt.errors import Interrupted
    from fsrt.sizes import human

    q = advice.question
    vs = variants(advice, spec)
    plan = measure_plan(q, vs, *timing)
    _check_memory(plan, vs)  # the networks at the target flops, before anything is built
    run_id = store.start_run(out_dir.name, mid, run_config(advice, plan))
    advice.run_id = run_id
    out = err_console()
    if not quiet:
        out.print(f"[bold]measuring[/] {', '.join(v.strategy.name for v in vs)} at {human(q.target_flops)} flops "
                  f"on {q.label} (run {out_dir.name}, id {run_id})")
    with _progress(out, quiet) as progress:
        try:
            points = run_sweep(plan, vs, [q.runtime], store, run_id, mid, out_dir / "work", progress)
        except KeyboardInterrupt as e:
            raise Interrupted("measured windows are stored: rerun the same command to resume", by=e) from None
    store.finish_run(run_id)
    between = _between_runs(store, mid, store.path, run_id, points)
    windows = store.windows(mid, sorted({p.mkey for p in points if p.mkey}))
    compare_measured(advice, points, windows, between.point_sd if between else None)
    if no_report:
        return None
    from fsrt.bench.report import write_report

    return write_report(store, [run_id], out_dir / "report").get("html")


def _print(advice, report) -> None:
    from rich.table import Table

    from fsrt.bench.latency_model import summary_line
    from fsrt.sizes import human

    con = console()
    q = advice.question
    con.print(f"[bold]fsrt advise[/] {advice.base_name} ({human(advice.base_flops)} flops) -> "
              f"{human(q.target_flops)} flops on {q.label}")
    con.print(f"latency model ({advice.fit_scope}): " + summary_line(advice.fitted))
    lo, hi = advice.fit_flops
    if q.target_flops > 1.5 * hi:
        con.print(f"[yellow]the target is {q.target_flops / hi:.1f}x the largest fitted model's flops "
                  f"({human(hi)}): predictions extrapolate[/]")
    table = Table(title=f"candidates at the target, fastest predicted first ('off': more than "
                        f"{100 * q.tolerance:g}% from the target, not recommended)")
    for col in ("#", "strategy", "s", "flops", "vs target", "params", "acts", "layers", "px", "predicted ms",
                "measured ms", "error"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for i, c in enumerate(advice.ranked, 1):
        cx = c.scaled.complexity
        p = advice.measured.get(c.label)
        meas = err = ""
        if p is not None and p.measured:
            ci = f" ±{100 * p.ci_rel:.1f}%" if p.ci_rel is not None else ""
            meas, err = f"{p.latency_ms:.3g}{ci}", f"{100 * (c.predicted_ms / p.latency_ms - 1):+.1f}%"
        elif p is not None:
            meas = str(p.status)
        off = f"{100 * c.miss:+.1f}%" + ("" if c.eligible(q.tolerance) else " (off)")
        table.add_row(str(i), c.label, f"{c.scaled.s:.3g}", human(cx.flops), off, human(cx.params), human(cx.acts),
                      str(c.layers), str(c.scaled.spec.resolution), f"{c.predicted_ms:.3g}", meas, err)
    con.print(table)
    for comp in advice.comparisons:
        con.print("measured: " + comp["verdict"])
    for c in advice.ranked:
        if c.label in advice.measured and not c.eligible(q.tolerance):
            con.print(f"[yellow]{c.label} lands {100 * c.miss:+.1f}% from the target flops (its nearest quantized "
                      "network): comparisons with it are not at equal flops[/]")
    if advice.recommendation:
        con.print(f"[bold]recommendation: {advice.recommendation}[/] ({advice.note})")
    if report:
        con.print(f"report: {report}")
