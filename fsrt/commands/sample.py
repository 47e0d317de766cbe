"""``fsrt sample``: draw AnyNetX / RegNet models until n fall in a flops band."""

from __future__ import annotations

import click

from fsrt.commands.common import console, err_console, json_option, positive_int, print_json, resolution_px


def parse_band(text: str) -> tuple[float, float]:
    """``"360M-400M"`` (or ``360M..400M``) -> (3.6e8, 4.0e8); one-line error otherwise."""
    import re

    from fsrt.errors import FsrtError
    from fsrt.sizes import parse_count

    parts = re.split(r"\s*(?:\.\.|(?<![eE])-)\s*", str(text).strip())
    if len(parts) != 2 or not all(parts):
        raise FsrtError(f"cannot read flops band {text!r}: use LOW-HIGH such as 360M-400M")
    lo, hi = parse_count(parts[0], "band low"), parse_count(parts[1], "band high")
    if lo > hi:
        raise FsrtError(f"flops band {text!r} is empty: the low end is above the high end")
    return lo, hi


@click.command("sample")
@click.option("--space", default="regnet", show_default=True,
              help="Design space: anynetx_a..anynetx_e, regnet (= regnetx), regnety.")
@click.option("--flops", "band", default="360M-400M", show_default=True, metavar="LOW-HIGH",
              help="Keep models whose flops (multiply-adds at --resolution) fall in this band; decimal units "
                   "(400M = 4e8).")
@click.option("-n", "n", default=32, show_default=True, type=int, callback=positive_int("-n"),
              help="Number of models to keep.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same models).")
@click.option("--resolution", default=224, show_default=True, type=int, callback=resolution_px("--resolution"),
              help="Input size for the flops band.")
@click.option("--max-draws", default=None, type=int, callback=positive_int("--max-draws"),
              help="Give up after this many draws (default max(20000, 2000*n)).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write one JSON record per model (name, flops, params, acts, sampled parameters, spec).")
@click.option("--force", "-f", is_flag=True, help="Replace an existing --output file.")
@json_option
def command(space, band, n, seed, resolution, max_draws, output, force, as_json):
    """Sample a design space (docs/architecture.md, "Design spaces") until N models fall in a flops band.

    AnyNetX_A samples per-stage d <= 16, w <= 1024 (multiple of 8), b in {1,2,4},
    g in {1,...,32} log-uniformly; B shares b, C shares g, D has non-decreasing widths,
    E non-decreasing depths too. RegNet samples d < 64, w0, wa < 256, 1.5 <= wm <= 3 and
    rejects configs that do not form exactly 4 stages.

    \b
    Examples:
      fsrt sample --space regnet --flops 360M-400M -n 32 --seed 0 -o samples.jsonl
      fsrt sample --space anynetx_e --flops 3.6G-4G -n 8 --json
    """
    import json

    from fsrt.design_space import canonical_space, sample_band
    from fsrt.errors import write_failure
    from fsrt.io import atomic_write_text, refuse_existing
    from fsrt.sizes import human

    if output:
        refuse_existing(output, force)
    space = canonical_space(space)
    lo, hi = parse_band(band)
    from rich.progress import Progress

    err = err_console()
    with Progress(console=err, transient=True, disable=not err.is_terminal) as prog:
        task = prog.add_task(f"sampling {space}", total=n)
        result = sample_band(space, n, lo, hi, seed=seed, resolution=resolution, max_draws=max_draws,
                             progress=lambda kept, draws: prog.update(task, completed=kept))
    records = [s.to_dict() for s in result.samples]
    if output:
        try:
            atomic_write_text(output, "".join(json.dumps(r) + "\n" for r in records))
        except OSError as e:
            raise write_failure(e, output) from None
    if as_json:
        print_json({"space": space, "band": [lo, hi], "seed": seed, "draws": result.draws,
                    "samples": [{k: v for k, v in r.items() if k != "spec"} for r in records]})
        return
    from rich.table import Table

    table = Table(title=f"{n} models from {space} in {human(lo)}-{human(hi)} flops "
                        f"({result.draws} draws, seed {seed})")
    for col, just in (("name", "left"), ("flops", "right"), ("params", "right"), ("acts", "right"),
                      ("stages d", "right"), ("widths", "right"), ("sampled", "left")):
        table.add_column(col, justify=just)
    for s in result.samples:
        table.add_row(s.spec.name, human(s.cx.flops), human(s.cx.params), human(s.cx.acts),
                      ",".join(str(st.depth) for st in s.spec.stages),
                      ",".join(str(st.width) for st in s.spec.stages),
                      " ".join(f"{k}={v}" for k, v in s.params.items()))
    console().print(table)
    if output:
        err_console().print(f"wrote {len(records)} records to {output}")
