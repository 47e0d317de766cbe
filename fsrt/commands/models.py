"""``fsrt models``: the zoo as a table (or JSON)."""

from __future__ import annotations

import click

from fsrt.commands.common import console, json_option, print_json


@click.command("models")
@click.option("--family", default=None, help="Only this family (regnetx, regnety, regnetz, effnet, resnet, "
              "resnext, resnet_rs).")
@json_option
def command(family: str | None, as_json: bool) -> None:
    """List every zoo model with its train resolution and flops (multiply-adds), params and
    activations at that resolution, computed from the spec.

    Names are case-insensitive wherever a MODEL argument is taken (regnety-400mf works).
    """
    from fsrt.complexity import complexity
    from fsrt.errors import FsrtError
    from fsrt.sizes import human
    from fsrt.zoo import zoo_names, zoo_spec

    specs = {name: zoo_spec(name) for name in zoo_names()}
    families = sorted({spec.family for spec in specs.values()})
    if family and family.lower() not in families:
        raise FsrtError(f"no zoo family {family!r}; families: {', '.join(families)}")
    rows = []
    for name, spec in specs.items():
        if family and spec.family != family.lower():
            continue
        cx = complexity(spec)
        rows.append({"name": name, "family": spec.family, "resolution": spec.resolution,
                     "depth": spec.depth, **cx.to_dict()})
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"fsrt model zoo ({len(rows)} models; flops = multiply-adds)")
    for col, just in (("name", "left"), ("family", "left"), ("res", "right"), ("blocks", "right"),
                      ("flops", "right"), ("params", "right"), ("acts", "right")):
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(r["name"], r["family"], str(r["resolution"]), str(r["depth"]), human(r["flops"]),
                      human(r["params"]), human(r["acts"]))
    console().print(table)
