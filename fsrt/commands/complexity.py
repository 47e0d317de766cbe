"""``fsrt complexity``: per-stage flops/params/acts of a model, spec file or checkpoint."""

from __future__ import annotations

import click

from fsrt.commands.common import console, json_option, print_json, resolution_px


@click.command("complexity")
@click.argument("model")
@click.option("--resolution", "-r", type=int, default=None, callback=resolution_px("--resolution"),
              help="Input size in pixels (default: the spec's train resolution).")
@json_option
def command(model: str, resolution: int | None, as_json: bool) -> None:
    """Show the complexity of MODEL (zoo name, spec YAML/JSON, or checkpoint) stage by stage.

    Flops are multiply-adds; activations count the output elements of every conv, FC and
    pool (docs/architecture.md, "Complexity conventions"). Example: fsrt complexity RegNetY-400MF -r 160
    """
    from fsrt.complexity import complexity_breakdown
    from fsrt.sizes import human
    from fsrt.source import get_spec

    spec = get_spec(model)
    bd = complexity_breakdown(spec, resolution)
    total = bd.total
    if as_json:
        print_json({
            "name": spec.name or model, "family": spec.family, "resolution": bd.resolution, **total.to_dict(),
            "parts": [{"name": p.name, "depth": p.depth, "shape": list(p.shape), **p.cx.to_dict()} for p in bd.parts],
        })
        return
    from rich.table import Table

    title = f"{spec.name or model} at {bd.resolution}px: {human(total.flops)} flops, {human(total.params)} params, " \
            f"{human(total.acts)} acts"
    table = Table(title=title)
    for col in ("part", "blocks", "width", "out (C,H,W)", "flops", "params", "acts"):
        table.add_column(col, justify="left" if col == "part" else "right")
    widths = {f"stage{i + 1}": st for i, st in enumerate(spec.stages)}
    for p in bd.parts:
        st = widths.get(p.name)
        table.add_row(p.name, str(p.depth or ""), str(st.width) if st else "", "x".join(map(str, p.shape)),
                      f"{p.cx.flops:,}", f"{p.cx.params:,}", f"{p.cx.acts:,}")
    table.add_row("total", str(spec.depth), "", "", f"{total.flops:,}", f"{total.params:,}", f"{total.acts:,}",
                  style="bold")
    console().print(table)
