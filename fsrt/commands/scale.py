"""``fsrt scale``: scale a model by a strategy to a flops multiplier or a flops target."""

from __future__ import annotations

import click

from fsrt.commands.common import console, err_console, json_option, print_json


@click.command("scale")
@click.argument("model")
@click.option("--alpha", "-a", default=None, metavar="A",
              help="Alpha-family strategy: width gets A of the flops, depth and resolution (1-A)/2 each.")
@click.option("--strategy", "-S", default=None, metavar="NAME",
              help="Named strategy: d w r dw dr wr dwr dWr effnet, alpha=A, or pycls grammar "
                   "(d1_w8_g8_r1, pycls:dw).")
@click.option("--s", "-s", "s", default=None, metavar="S", help="Flops multiplier to scale by (> 0).")
@click.option("--target-flops", "-t", default=None, metavar="SIZE",
              help="Search s so the scaled model lands on these flops, in decimal units (4G = 4e9; e.g. 4G, 800M).")
@click.option("--tolerance", default=0.01, show_default=True, type=float,
              help="With --target-flops: relative miss counted as reached.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the scaled spec here (.yaml/.yml or .json).")
@click.option("--force", "-f", is_flag=True, help="Replace an existing --output file.")
@json_option
def command(model, alpha, strategy, s, target_flops, tolerance, output, force, as_json):
    """Scale MODEL (zoo name, spec file or checkpoint) and show it before and after.

    Quantization follows pycls (depth rounded, widths to multiples of 8, group widths snapped,
    block compatibility, resolution to multiples of 4), so the realized flops multiplier
    differs from s; both are shown. --target-flops searches s to land within 1% of the target
    where the grid allows and reports the miss otherwise.

    \b
    Examples:
      fsrt scale RegNetY-400MF --strategy dWr --s 4
      fsrt scale EfficientNet-B0 --alpha 0.8 --target-flops 1.6G -o en_1.6g.yaml
      fsrt scale RegNetY-400MF --strategy d1_w8_g8_r1 --s 4 --json
    """
    from fsrt.errors import FsrtError, write_failure
    from fsrt.io import refuse_existing
    from fsrt.scaling import parse_strategies, scale_spec, scale_to_flops
    from fsrt.sizes import parse_count
    from fsrt.source import SPEC_SUFFIXES, get_spec

    if output:
        if not output.lower().endswith(SPEC_SUFFIXES):
            raise FsrtError(f"--output {output} must end in .yaml, .yml or .json (the format follows the suffix)")
        refuse_existing(output, force)
    strategies = parse_strategies(alpha, strategy)
    if len(strategies) != 1:
        raise FsrtError("give exactly one strategy, --alpha A or --strategy NAME (e.g. --alpha 0.8 or --strategy dWr); "
                        "'fsrt scaling' compares several")
    strat = strategies[0]
    if (s is None) == (target_flops is None):
        raise FsrtError("give exactly one of --s S or --target-flops SIZE (e.g. --s 4 or --target-flops 4G)")
    if not (0 < tolerance < 1):
        raise FsrtError(f"--tolerance must be in (0, 1), got {tolerance:g}")
    spec = get_spec(model)
    if s is not None:
        try:
            s_value = float(s)
        except ValueError:
            raise FsrtError(f"--s must be a number > 0, got {s!r}") from None
        result = scale_spec(spec, strat, s_value)
    else:
        target = parse_count(target_flops, "--target-flops")
        result = scale_to_flops(spec, strat, target, tolerance=tolerance)
    if output:
        try:
            result.spec.save(output)
        except OSError as e:
            raise write_failure(e, output) from None
    if as_json:
        doc = result.to_dict()
        if output:
            doc["output"] = str(output)
        print_json(doc)
        return
    _print_table(result)
    if output:
        err_console().print(f"wrote {output}")


def _print_table(result) -> None:
    """Before/after table of complexity, resolution and per-stage d/w/g."""
    from rich.table import Table

    from fsrt.sizes import human

    base, new = result.base, result.spec
    bc, nc = result.base_complexity, result.complexity
    f = result.factors
    con = console()
    con.print(f"[bold]{new.name}[/bold]: requested x{result.s:.4g}, realized x{result.flops_multiplier:.3f} flops; "
              f"factors d {f['d']:.3f}, w {f['w']:.3f}, g {f['g']:.3f}, r {f['r']:.3f}", highlight=False)
    table = Table()
    for col, just in (("", "left"), ("before", "right"), ("after", "right"), ("ratio", "right")):
        table.add_column(col, justify=just)
    for key in ("flops", "params", "acts"):
        b, a = getattr(bc, key), getattr(nc, key)
        table.add_row(key, human(b), human(a), f"x{a / b:.3f}")
    table.add_row("resolution", str(base.resolution), str(new.resolution), f"x{new.resolution / base.resolution:.3f}")
    if base.family == "effnet":
        table.add_row("stem / head width", f"{base.stem.out_width} / {base.head.width}",
                      f"{new.stem.out_width} / {new.head.width}", "")
    for i, (bs, ns) in enumerate(zip(base.stages, new.stages)):
        if bs.block == "mbconv":
            table.add_row(f"stage{i + 1} d/w", f"{bs.depth} / {bs.width}", f"{ns.depth} / {ns.width}", "")
        else:
            table.add_row(f"stage{i + 1} d/w/g", f"{bs.depth} / {bs.width} / {bs.group_w}",
                          f"{ns.depth} / {ns.width} / {ns.group_w}", "")
    con.print(table)
    if result.target_flops is not None:
        state = "reached" if result.reached else "NOT reached (the grid has no closer model)"
        con.print(f"target {human(result.target_flops)} flops: got {human(nc.flops)} "
                        f"(miss {result.miss * 100:+.2f}%, tolerance {result.tolerance * 100:g}%) {state}; "
                        f"s = {result.s:.5g} after {result.evaluations} evaluations")
