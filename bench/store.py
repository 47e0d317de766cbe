"""The results store: an embedded SQLite database keyed by machine fingerprint.

One file (``runs/fsrt.db`` by default) holds every measured point of every run on every
machine. A point is identified by ``(machine_id, key)`` where ``key`` hashes everything that
determines the measurement (spec, runtime, precision, batch, resolution, threads, options), so
an interrupted or repeated sweep finds its finished points and skips them, and databases from
several machines can be merged. The schema is versioned: a newer schema or a corrupt file is a
clear error, never an overwrite.
"""

from __future__ import annotations

import json
import sqlite3
import time
import types
import typing
from pathlib import Path

from fsrt.bench import sqlite_file
from fsrt.bench.points import POINT_FIELDS, Point, Status
from fsrt.bench.rounds import Window
from fsrt.errors import FsrtError


def _base_type(hint) -> type:
    """``int`` for ``int | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


# Tables added by schema 2: timing windows of every measurement (so figures, intervals and paired
# comparisons can be recomputed, and an interrupted sweep resumes mid-measurement) and per-machine
# settings decided by measurement (such as the default thread count).
_SCHEMA_2_TABLES = """
CREATE TABLE IF NOT EXISTS windows (
    machine_id TEXT NOT NULL, mkey TEXT NOT NULL, round INTEGER NOT NULL, started REAL NOT NULL,
    times_ms TEXT NOT NULL, dropped INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (machine_id, mkey, round));
CREATE TABLE IF NOT EXISTS settings (
    machine_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, measured REAL NOT NULL,
    PRIMARY KEY (machine_id, key));
"""

SCHEMA_VERSION = 2

# Columns of a point (``fsrt.bench.points.Point``), in order, with their SQLite types.
_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}
POINT_COLUMNS = {name: _TYPES[_base_type(hint)] for name, hint in typing.get_type_hints(Point).items()
                 if name in POINT_FIELDS}
# Schema 1 columns no longer written: kept in old databases, ignored when read.
RETIRED_COLUMNS = ("unstable", "spec_json")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machines (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, machine_id TEXT NOT NULL REFERENCES machines(id),
    created REAL NOT NULL, config TEXT NOT NULL, finished REAL);
CREATE TABLE IF NOT EXISTS ceilings (
    machine_id TEXT NOT NULL, device TEXT NOT NULL, dtype TEXT NOT NULL, threads INTEGER NOT NULL,
    peak_flops REAL NOT NULL, copy_bytes_per_s REAL NOT NULL, measured REAL NOT NULL,
    PRIMARY KEY (machine_id, device, dtype, threads));
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT, machine_id TEXT NOT NULL, key TEXT NOT NULL,
    {", ".join(f"{c} {t}" for c, t in POINT_COLUMNS.items())},
    UNIQUE (machine_id, key));
CREATE TABLE IF NOT EXISTS run_points (
    run_id INTEGER NOT NULL REFERENCES runs(id), point_id INTEGER NOT NULL REFERENCES points(id),
    PRIMARY KEY (run_id, point_id));
CREATE TABLE IF NOT EXISTS unavailable (
    run_id INTEGER NOT NULL REFERENCES runs(id), runtime TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (run_id, runtime));
{_SCHEMA_2_TABLES}
"""


BUSY_TIMEOUT_S = 30.0  # how long to wait for another process's write lock before giving up


def _init_schema(db: sqlite3.Connection) -> None:
    with db:
        db.executescript(_SCHEMA)
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


class Store:
    """A results database. Use as a context manager or call ``close()``.

    ``readonly=True`` (for commands that only read, such as ``fsrt report``) never creates or
    changes anything: a missing or empty file is an error. Otherwise a new database is built
    whole beside its path and moved into place, so a failure leaves none behind.
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if self.path.exists() and self.path.is_dir():
            raise FsrtError(f"results database {self.path} is a directory; pass a file path")
        if readonly and not self.path.is_file():
            raise FsrtError(f"no results database at {self.path}; run fsrt bench first (or pass --db)")
        if not readonly:
            sqlite_file.check_writable(self.path)
            if not self.path.exists() or self.path.stat().st_size == 0:
                sqlite_file.create_whole(self.path, _init_schema)
        self.db = sqlite_file.connect(self.path, readonly, BUSY_TIMEOUT_S)
        try:
            self._check_and_migrate()
        except BaseException:
            self.db.close()
            raise

    def _check_and_migrate(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            try:
                version = int(row[0]) if row else 0
            except (TypeError, ValueError):
                raise FsrtError(f"results database {self.path} has an unreadable schema version {row[0]!r}; "
                                "it was not written by fsrt as it is: move it aside") from None
            if version > SCHEMA_VERSION:
                raise FsrtError(f"results database {self.path} has schema version {version}, newer than this "
                                f"fsrt understands ({SCHEMA_VERSION}); upgrade fsrt or use another --db")
            if version < 1:
                raise FsrtError(f"results database {self.path} has no usable schema version; move it aside")
            if version < SCHEMA_VERSION:
                if self.readonly:  # reading never writes: upgrade a copy in memory, leave the file as it is
                    self.db = sqlite_file.in_memory_copy(self.db, self.path)
                self._migrate(version)
            return
        if tables:
            raise FsrtError(f"{self.path} is an SQLite database but not an fsrt results store; use another --db")
        if self.readonly:
            raise FsrtError(f"{self.path} is empty, not an fsrt results database; run fsrt bench --db {self.path} "
                            "first")
        _init_schema(self.db)  # an SQLite file without tables: nothing to lose, make it a store

    def _migrate(self, version: int) -> None:
        """Upgrade an older database in place, in one transaction (all or nothing), keeping its points:
        a failure (disk full, locked) or an interruption, even SIGKILL, leaves the old schema intact
        (SQLite rolls back the transaction, or its journal on the next open)."""
        steps = {1: _migrate_1_to_2}
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            while version < SCHEMA_VERSION:
                steps[version](self.db)
                version += 1
            self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))

    # -- context manager -----------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- machines and runs ---------------------------------------------------------------
    def add_machine(self, machine_id: str, fingerprint: dict) -> None:
        """Record a machine (idempotent)."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO machines VALUES (?, ?, ?)",
                            (machine_id, json.dumps(fingerprint, sort_keys=True), time.time()))

    def machines(self) -> dict[str, dict]:
        """All machines: id -> fingerprint."""
        return {r["id"]: json.loads(r["fingerprint"]) for r in self.db.execute("SELECT * FROM machines")}

    def start_run(self, name: str, machine_id: str, config: dict) -> int:
        """Open a run, or reopen the latest run with this name, machine and config (resume)."""
        cfg = json.dumps(config, sort_keys=True)
        row = self.db.execute("SELECT id FROM runs WHERE name=? AND machine_id=? AND config=? ORDER BY id DESC LIMIT 1",
                              (name, machine_id, cfg)).fetchone()
        if row:
            return int(row["id"])
        with self.db:
            cur = self.db.execute("INSERT INTO runs (name, machine_id, created, config) VALUES (?, ?, ?, ?)",
                                  (name, machine_id, time.time(), cfg))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int) -> None:
        """Mark a run finished."""
        with self.db:
            self.db.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    def runs(self) -> list[dict]:
        """All runs with their point counts, newest last."""
        rows = self.db.execute(
            "SELECT r.*, COUNT(rp.point_id) AS n_points FROM runs r LEFT JOIN run_points rp ON rp.run_id = r.id "
            "GROUP BY r.id ORDER BY r.id").fetchall()
        return [{**dict(r), "config": json.loads(r["config"])} for r in rows]

    def run(self, ref: str | int) -> dict:
        """A run by id or by name (the latest of that name)."""
        runs = self.runs()
        for r in reversed(runs):
            if str(r["id"]) == str(ref) or r["name"] == str(ref):
                return r
        names = ", ".join(sorted({r["name"] for r in runs})) or "none yet"
        raise FsrtError(f"no run {ref!r} in {self.path} (runs: {names})")

    # -- points --------------------------------------------------------------------------
    def find_point(self, machine_id: str, key: str) -> Point | None:
        """The stored point for this machine and key, if measured before."""
        row = self.db.execute("SELECT * FROM points WHERE machine_id=? AND key=?", (machine_id, key)).fetchone()
        return Point.from_row(dict(row)) if row else None

    def put_point(self, run_id: int, machine_id: str, key: str, point: Point) -> int:
        """Insert or replace a point and link it to the run; committed immediately (crash-safe resume)."""
        if not isinstance(point, Point):
            raise TypeError(f"put_point takes a Point, got {type(point).__name__}")
        values = {c: getattr(point, c) for c in POINT_COLUMNS}
        values["status"] = str(values["status"]) if values["status"] is not None else None
        values["created"] = values["created"] or time.time()
        cols = ", ".join(POINT_COLUMNS)
        marks = ", ".join("?" for _ in POINT_COLUMNS)
        with self.db:
            updates = ", ".join(f"{c}=excluded.{c}" for c in POINT_COLUMNS)  # upsert keeps the id runs link to
            self.db.execute(f"INSERT INTO points (machine_id, key, {cols}) VALUES (?, ?, {marks}) "
                            f"ON CONFLICT(machine_id, key) DO UPDATE SET {updates}",
                            (machine_id, key, *values.values()))
            pid = self.db.execute("SELECT id FROM points WHERE machine_id=? AND key=?", (machine_id, key)).fetchone()[0]
            self.db.execute("INSERT OR IGNORE INTO run_points VALUES (?, ?)", (run_id, pid))
        return int(pid)

    def link_point(self, run_id: int, point_id: int) -> None:
        """Attach an already-measured point to a run (resume and reuse)."""
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO run_points VALUES (?, ?)", (run_id, point_id))

    def run_points(self, run_id: int) -> list[Point]:
        """Every point of a run, with its machine id."""
        rows = self.db.execute("SELECT p.* FROM points p JOIN run_points rp ON rp.point_id = p.id WHERE rp.run_id=? "
                               "ORDER BY p.id", (run_id,)).fetchall()
        return [Point.from_row(dict(r)) for r in rows]

    def machine_points(self, machine_id: str) -> list[Point]:
        """Every point stored for a machine, from every run (what a latency model is fitted on)."""
        rows = self.db.execute("SELECT * FROM points WHERE machine_id=? ORDER BY id", (machine_id,)).fetchall()
        return [Point.from_row(dict(r)) for r in rows]

    # -- timing windows ------------------------------------------------------------------
    def put_windows(self, machine_id: str, mkey: str, windows: list[Window]) -> None:
        """Store (or update the outlier flags of) a measurement's windows; committed at once."""
        with self.db:
            self.db.executemany(
                "INSERT INTO windows VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(machine_id, mkey, round) "
                "DO UPDATE SET dropped=excluded.dropped",
                [(machine_id, mkey, w.round, w.started, json.dumps(list(w.times_ms)), int(w.dropped))
                 for w in windows])

    def windows(self, machine_id: str, mkeys: list[str]) -> dict[str, list[Window]]:
        """Stored windows of measurements, by mkey, in round order."""
        out: dict[str, list[Window]] = {}
        for i in range(0, len(mkeys), 500):
            chunk = mkeys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT * FROM windows WHERE machine_id=? AND mkey IN ({marks}) ORDER BY round",
                                   (machine_id, *chunk)).fetchall()
            for r in rows:
                out.setdefault(r["mkey"], []).append(Window(r["round"], tuple(json.loads(r["times_ms"])),
                                                            r["started"], bool(r["dropped"])))
        return out

    # -- per-machine settings ------------------------------------------------------------
    def setting(self, machine_id: str, key: str) -> dict | None:
        """A setting decided by measurement on a machine (JSON value), or None."""
        row = self.db.execute("SELECT value, measured FROM settings WHERE machine_id=? AND key=?",
                              (machine_id, key)).fetchone()
        return {**json.loads(row["value"]), "measured": row["measured"]} if row else None

    def put_setting(self, machine_id: str, key: str, value: dict) -> None:
        """Store a setting decided by measurement."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?, ?, ?)",
                            (machine_id, key, json.dumps(value, sort_keys=True), time.time()))

    def set_unavailable(self, run_id: int, runtime: str, reason: str) -> None:
        """Record that a runtime could not run in this run, and why."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO unavailable VALUES (?, ?, ?)", (run_id, runtime, reason))

    def unavailable(self, run_id: int) -> dict[str, str]:
        """Runtimes skipped in a run: name -> reason."""
        rows = self.db.execute("SELECT * FROM unavailable WHERE run_id=?", (run_id,))
        return {r["runtime"]: r["reason"] for r in rows}

    # -- ceilings ------------------------------------------------------------------------
    def put_ceiling(self, machine_id: str, device: str, dtype: str, threads: int, peak_flops: float,
                    copy_bytes_per_s: float) -> None:
        """Store a measured matmul peak (FLOP/s, 2 per multiply-add) and copy bandwidth (bytes/s)."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO ceilings VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (machine_id, device, dtype, threads, peak_flops, copy_bytes_per_s, time.time()))

    def ceiling(self, machine_id: str, device: str, dtype: str, threads: int) -> dict | None:
        """A stored ceiling, if measured."""
        row = self.db.execute("SELECT * FROM ceilings WHERE machine_id=? AND device=? AND dtype=? AND threads=?",
                              (machine_id, device, dtype, threads)).fetchone()
        return dict(row) if row else None

    def ceilings(self, machine_id: str) -> list[dict]:
        """All ceilings measured on a machine."""
        return [dict(r) for r in self.db.execute("SELECT * FROM ceilings WHERE machine_id=?", (machine_id,))]


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: new point columns, the windows and settings tables; old points keep their
    single-window median as their figure (without an interval) and their notes move out of
    ``reason``."""
    have = {r[1] for r in db.execute("PRAGMA table_info(points)")}
    for col, typ in POINT_COLUMNS.items():
        if col not in have:
            db.execute(f"ALTER TABLE points ADD COLUMN {col} {typ}")
    for statement in _SCHEMA_2_TABLES.split(";"):  # not executescript: it would commit mid-migration
        if statement.strip():
            db.execute(statement)
    db.execute("UPDATE points SET mode='infer'")  # schema 1 measured inference only
    measured = tuple(str(s) for s in (Status.OK, Status.UNSTABLE))
    db.execute("UPDATE points SET latency_ms=median_ms, rounds=1, dropped_rounds=0, "
               "statistic='median of one timing window (schema 1)', note=reason, reason=NULL "
               f"WHERE status IN {measured}")
    from fsrt.scaling import parse_strategy

    for (name,) in db.execute("SELECT DISTINCT strategy FROM points WHERE strategy IS NOT NULL").fetchall():
        try:
            st = parse_strategy(name)
        except FsrtError:
            continue
        db.execute("UPDATE points SET e_d=?, e_w=?, e_r=? WHERE strategy=?", (st.e_d, st.e_w, st.e_r, name))
