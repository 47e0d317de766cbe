"""``fsrt scaling``: sweep strategies over s and fit params/acts exponents against flops."""

from __future__ import annotations

import click

from fsrt.commands.common import console, err_console, json_option, print_json


@click.command("scaling")
@click.argument("model")
@click.option("--alpha", "-a", default=None, metavar="A,B,...",
              help="Alpha-family members to sweep, comma-separated (e.g. 0.33,0.8,1).")
@click.option("--strategy", "-S", default=None, metavar="NAME,...",
              help="Named strategies to sweep, comma-separated (e.g. d,w,r,dWr,effnet,d1_w8_g8_r1).")
@click.option("--sweep", default="s=1..32", show_default=True, metavar="s=A..B[xR] | s=V1,V2",
              help="Values of s: s=1..32 doubles, s=1..32x1.5 uses ratio 1.5, s=1,3,9 lists.")
@click.option("--rows/--no-rows", default=True, show_default=True, help="Print the per-model table too.")
@json_option
def command(model, alpha, strategy, sweep, rows, as_json):
    """Scale MODEL by each strategy over a sweep of s and fit the exponents of params and
    activations against flops (least squares in log-log), next to theory:
    params ~ flops^((1+alpha)/2), acts ~ flops^((2-alpha)/2) in the alpha family
    (in general e_d + e_w and e_d + e_w/2 + e_r).

    \b
    Examples:
      fsrt scaling RegNetY-400MF --alpha 0.33,0.8,1 --sweep s=1..32
      fsrt scaling EfficientNet-B0 --strategy d,w,r,dWr --sweep s=1..16x1.5 --json
    """
    from fsrt.errors import FsrtError
    from fsrt.scaling import parse_strategies, scaling_analysis
    from fsrt.source import get_spec
    from fsrt.sweep import parse_sweep

    strategies = parse_strategies(alpha, strategy)
    if not strategies:
        raise FsrtError("give --alpha A,B,... and/or --strategy NAME,... (e.g. --alpha 0.33,0.8,1)")
    var, values = parse_sweep(sweep)
    if var != "s":
        raise FsrtError(f"--sweep must sweep s (e.g. s=1..32), got {var!r}")
    spec = get_spec(model)
    total = len(strategies) * len(values)
    if as_json or total < 40:
        analysis = scaling_analysis(spec, strategies, values)
    else:
        from rich.progress import Progress

        err = err_console()
        with Progress(console=err, transient=True, disable=not err.is_terminal) as prog:
            task = prog.add_task("scaling", total=total)
            analysis = scaling_analysis(spec, strategies, values, progress=lambda: prog.advance(task))
    if as_json:
        print_json(analysis.to_dict())
        return
    _print(analysis, rows)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _print(analysis, rows: bool) -> None:
    from rich.table import Table

    from fsrt.sizes import human

    con = console()
    if rows:
        table = Table(title=f"{analysis.base.name}: scaled models (flops multiplier = realized)")
        for col, just in (("strategy", "left"), ("s", "right"), ("x flops", "right"), ("res", "right"),
                          ("flops", "right"), ("params", "right"), ("acts", "right")):
            table.add_column(col, justify=just)
        for r in analysis.rows:
            table.add_row(r.strategy, f"{r.s:.4g}", f"{r.flops_multiplier:.3f}", str(r.resolution), human(r.flops),
                          human(r.params), human(r.acts))
        con.print(table)
    fits = Table(title="fitted exponents vs flops (log-log least squares) and theory")
    for col, just in (("strategy", "left"), ("alpha", "right"), ("params fit", "right"), ("theory", "right"),
                      ("acts fit", "right"), ("theory", "right"), ("flops vs s", "right"), ("points", "right")):
        fits.add_column(col, justify=just)
    for f in analysis.fits:
        alpha = "" if f.strategy.alpha is None else f"{f.strategy.alpha:.3g}"
        fits.add_row(f.strategy.name, alpha, _fmt(f.params_exponent), _fmt(f.params_theory), _fmt(f.acts_exponent),
                     _fmt(f.acts_theory), _fmt(f.flops_exponent), str(f.points))
    con.print(fits)
