"""``fsrt report``: rewrite the deployment-latency report of stored runs (one run, or several side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from fsrt.commands.common import console, json_option, print_json

DEFAULT_DB = Path("runs") / "fsrt.db"


def default_out_dir(db: Path, runs: list[dict]) -> Path:
    """``<db folder>/<run name>/report`` for one run, ``<db folder>/compare-<names>/report`` for several."""
    from fsrt.names import slug

    names = [r["name"] for r in runs]
    parts = [slug(r["name"], "run") if names.count(r["name"]) == 1 else f"{slug(r['name'], 'run')}-{r['id']}"
             for r in runs]
    folder = parts[0] if len(runs) == 1 else "compare-" + "-".join(parts)
    return db.parent / folder / "report"


def check_unambiguous(stored: list[dict], ref: str, db: Path) -> None:
    """Refuse a run name shared by several runs (the same --out with another config), listing
    their ids, instead of guessing; an id is always exact."""
    from fsrt.errors import FsrtError

    if any(str(r["id"]) == str(ref) for r in stored):
        return
    named = [r for r in stored if r["name"] == str(ref)]
    if len(named) > 1:
        ids = ", ".join(str(r["id"]) for r in named)
        raise FsrtError(f"{len(named)} runs in {db} are named {ref!r} (ids {ids}); pass an id instead, "
                        f"e.g. fsrt report {named[-1]['id']} (see fsrt report --list)")


@click.command("report")
@click.argument("runs", nargs=-1, metavar="[RUN ...]")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
              help="Results database written by fsrt bench.")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Report folder (default: runs/<run name>/report, or runs/compare-<names>/report).")
@click.option("--list", "list_runs", is_flag=True, help="List the runs in the database and exit.")
@json_option
def command(runs: tuple[str, ...], db_path: Path, out_dir: Path | None, list_runs: bool, as_json: bool) -> None:
    """Write the deployment-latency report of stored RUNs (ids or names; default: the latest run).

    The report folder gets report.md, a self-contained report.html (plots embedded, works
    offline), plots/*.png, points.csv (every point) and summary.json. Two or more runs, e.g.
    the same sweep on two machines, are also compared side by side (ratio of medians).

    \b
    Examples:
      fsrt report                          the latest run, into runs/<name>/report
      fsrt report 3 --out /tmp/rep         run id 3 into /tmp/rep
      fsrt report cpu-sweep gpu-sweep      two runs side by side
      fsrt report --list                   the runs stored in runs/fsrt.db
      fsrt report --json                   summary.json on stdout
    """
    from fsrt.errors import FsrtError

    if not db_path.exists():
        raise FsrtError(f"no results database at {db_path}; run fsrt bench first (or pass --db)")
    if db_path.is_dir():
        raise FsrtError(f"results database {db_path} is a directory; pass --db a file")
    from fsrt.bench.report import write_report
    from fsrt.bench.store import Store

    with Store(db_path, readonly=True) as store:  # reading never writes, not even to an empty file
        stored = store.runs()
        if list_runs:
            _print_runs(stored, as_json)
            return
        if not stored:
            raise FsrtError(f"no runs in {db_path}; run fsrt bench first")
        for ref in runs:
            check_unambiguous(stored, ref, db_path)
        selected = [store.run(r) for r in runs] if runs else [stored[-1]]
        out = out_dir if out_dir is not None else default_out_dir(db_path, selected)
        written = write_report(store, [r["id"] for r in selected], out)
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    if as_json:
        print_json(doc)
        return
    con = console()
    con.print(f"[bold]report[/bold] of {', '.join(r['label'] for r in doc['runs'])} written to [cyan]{out}[/cyan]")
    con.print(f"  {written['html'].name}  {written['markdown'].name}  {written['csv'].name}  "
              f"{written['json'].name}  plots/ ({sum(1 for k in written if k.startswith('plots/'))} PNG)")
    for line in doc["summary"]:
        con.print(f"  - {line}", highlight=False)


def _print_runs(stored: list[dict], as_json: bool) -> None:
    if as_json:
        print_json([{k: r[k] for k in ("id", "name", "machine_id", "created", "finished", "n_points")} for r in stored])
        return
    from datetime import datetime, timezone

    from rich.table import Table

    table = Table(title="runs")
    for col in ("id", "name", "machine", "created", "finished", "points"):
        table.add_column(col, justify="right" if col in ("id", "points") else "left")
    fmt = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M") if t else "-"
    for r in stored:
        table.add_row(str(r["id"]), r["name"], r["machine_id"], fmt(r["created"]), fmt(r["finished"]),
                      str(r["n_points"]))
    console().print(table)
