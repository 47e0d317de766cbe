"""The results database under faults: read-only, locked, disk full (creating and writing), an
unwritable folder, a bad schema version, an empty file opened by a read-only command, and a run
name shared by two runs. Every failure says what is really wrong in one line and changes nothing.

Disk full is injected with SQLite's own page limit (``PRAGMA max_page_count``), which fails a
write with the very error (SQLITE_FULL) a full disk gives; a read-only file is SQLite's own
read-only mode (what it falls back to when the file cannot be opened for writing).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fault_helpers import listing, no_temp_files, run_main, unwritable_folder

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench import sqlite_file
from fsrt.bench import store as store_module
from fsrt.bench.points import Point
from fsrt.bench.store import Store
from fsrt.errors import FsrtError


def _point(**kw) -> Point:
    base = {"model": "m", "strategy": "w", "s": 1.0, "runtime": "eager", "mode": "infer", "precision": "fp32",
            "batch": 1, "flops": 10, "params": 2, "acts": 3, "status": "ok", "latency_ms": 1.0, "mkey": "k"}
    return Point(**{**base, **kw})


def _filled(db) -> int:
    with Store(db) as st:
        st.add_machine("m1", {"cpu": "x"})
        run = st.start_run("sweep", "m1", {"a": 1})
        st.put_point(run, "m1", "k1", _point())
    return run


def _integrity(db) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _page_limited_connect(extra_pages: int):
    """``sqlite3.connect`` whose connections may grow the file by at most ``extra_pages`` pages."""
    real = sqlite3.connect

    def connect(*args, **kwargs):
        con = real(*args, **kwargs)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count = {max(1, pages + extra_pages)}")
        return con

    return connect


# -- 8: disk full while creating a database ---------------------------------------------------------------
def test_disk_full_while_creating_leaves_no_database(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", _page_limited_connect(2))
    db = tmp_path / "runs" / "fsrt.db"
    with pytest.raises(FsrtError, match="disk is full") as info:
        Store(db)
    assert "nothing was written" in str(info.value) and "corrupt" not in str(info.value)
    assert listing(tmp_path) == ["runs"]  # no half-built database, no temp file or journal
    monkeypatch.undo()
    _filled(db)  # once there is space, the same path just works
    assert _integrity(db) == "ok"


# -- 4: disk full while writing to an existing database -----------------------------------------------------
def test_disk_full_on_an_existing_database_keeps_what_was_stored(tmp_path, monkeypatch):
    db = tmp_path / "fsrt.db"
    run = _filled(db)
    monkeypatch.setattr(sqlite3, "connect", _page_limited_connect(0))
    stored = 0
    with Store(db) as st:
        with pytest.raises(FsrtError, match="the disk is full") as info:
            for i in range(200):  # big points until a new page is needed
                st.put_point(run, "m1", f"big{i}", _point(reason="x" * 1500, latency_ms=2.0))
                stored += 1
    assert "what was stored before is intact" in str(info.value)
    monkeypatch.undo()
    assert _integrity(db) == "ok"
    with Store(db) as st:  # every committed point is there and whole, the failed one is not there at all
        points = st.run_points(run)
    assert [p.latency_ms for p in points] == [1.0] + [2.0] * stored
    assert all(p.reason == "x" * 1500 for p in points[1:])


def test_disk_full_during_bench_is_one_line(tmp_path, capsys, monkeypatch):
    db = tmp_path / "fsrt.db"
    run = _filled(db)
    with Store(db) as st:  # fill the points page, so the bench's first point needs a page the disk does not have
        st.put_point(run, "m1", "filler", _point(reason="x" * 3500))
    monkeypatch.setattr(sqlite3, "connect", _page_limited_connect(0))
    res = run_main(capsys, "bench", "RegNetX-200MF", "--resolution", "32", "--sweep", "s=1", "--strategy", "w",
                   "--runtimes", "eager", "--measure-s", "0.05", "--warmup-s", "0.02", "--threads", "1",
                   "--db", str(db), "--out", str(tmp_path / "run"), "--no-report", "--json")
    assert_one_line_error(res, "disk is full", str(db))
    assert _integrity(db) == "ok"
    with Store(db) as st:
        assert len(st.run_points(run)) == 2  # the earlier run is intact


# -- 5: a read-only database -------------------------------------------------------------------------------------
def test_read_only_database_is_refused_before_writing(tmp_path, monkeypatch):
    db = tmp_path / "fsrt.db"
    _filled(db)
    before = db.read_bytes()
    real_access = os.access
    monkeypatch.setattr(sqlite_file.os, "access",
                        lambda p, mode: False if str(p) == str(db) and mode & os.W_OK else real_access(p, mode))
    with pytest.raises(FsrtError, match="is read-only; make it writable"):
        Store(db)
    assert db.read_bytes() == before


def test_write_to_a_database_sqlite_opened_read_only_is_one_line(tmp_path):
    db = tmp_path / "fsrt.db"
    _filled(db)
    before = db.read_bytes()
    with Store(db) as st:
        st.db.close()
        st.db = sqlite_file.connect(db, readonly=True, timeout=1)  # SQLite's state for a file it cannot write
        with pytest.raises(FsrtError, match="is read-only") as info:
            st.add_machine("m2", {"cpu": "y"})
    assert "sqlite3" not in str(info.value) and db.read_bytes() == before


def test_read_only_bench_db_through_the_cli(tmp_path, capsys, monkeypatch):
    db = tmp_path / "fsrt.db"
    _filled(db)
    real_access = os.access
    monkeypatch.setattr(sqlite_file.os, "access",
                        lambda p, mode: False if str(p) == str(db) and mode & os.W_OK else real_access(p, mode))
    res = run_main(capsys, "bench", "RegNetX-200MF", "--resolution", "32", "--sweep", "s=1", "--strategy", "w",
                   "--runtimes", "eager", "--threads", "1", "--db", str(db), "--out", str(tmp_path / "run"))
    assert_one_line_error(res, "read-only")


def test_database_on_a_read_only_file_system_says_so_not_permissions(tmp_path, monkeypatch):
    db = tmp_path / "fsrt.db"
    _filled(db)
    before = db.read_bytes()
    real_statvfs = os.statvfs

    class ReadOnlyMount:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnlyMount() if str(p) == str(tmp_path) else real_statvfs(p))
    with pytest.raises(FsrtError, match="is on a read-only file system; pass --db elsewhere") as info:
        Store(db)
    assert "permission" not in str(info.value) and db.read_bytes() == before


# -- 6: a schema version that is not an integer ---------------------------------------------------------------
def test_non_integer_schema_version(tmp_path):
    db = tmp_path / "fsrt.db"
    _filled(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='1.x' WHERE key='schema_version'")
    con.commit()
    con.close()
    before = db.read_bytes()
    assert_one_line_error(run_fsrt("report", "--list", "--db", str(db)), "unreadable schema version '1.x'")
    assert db.read_bytes() == before


# -- 9: locked is not corrupt; neither is an unwritable folder -------------------------------------------------------
@pytest.fixture
def locked_db(tmp_path):
    """A healthy database that another process holds an exclusive lock on."""
    db = tmp_path / "fsrt.db"
    _filled(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "con.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    yield db, holder.pid
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("readonly", [False, True])
def test_locked_database_names_the_process_holding_it(locked_db, monkeypatch, readonly):
    db, pid = locked_db
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    with pytest.raises(FsrtError) as info:
        Store(db, readonly=readonly)
    msg = str(info.value)
    assert f"is locked by PID {pid}" in msg and "corrupt" not in msg and "move it aside" not in msg


def test_locked_database_through_the_cli(locked_db, capsys, monkeypatch):
    db, pid = locked_db
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    assert_one_line_error(run_main(capsys, "report", "--list", "--db", str(db)), f"locked by PID {pid}")


def test_new_database_in_an_unwritable_folder_says_so(tmp_path):
    for db in (unwritable_folder() / "fsrt.db", unwritable_folder().parent / "fsrt-test.db"):
        with pytest.raises(FsrtError) as info:
            Store(db)
        msg = str(info.value)
        assert "corrupt" not in msg, msg
        assert any(why in msg for why in ("not permitted", "Permission denied", "not writable")), msg
        assert not db.exists()


def test_unwritable_folder_of_an_existing_database_says_so(tmp_path, monkeypatch):
    db = tmp_path / "fsrt.db"
    _filled(db)
    real_access = os.access
    monkeypatch.setattr(sqlite_file.os, "access",
                        lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(FsrtError, match=f"its folder {tmp_path} is not writable"):
        Store(db)


# -- 21: read-only commands never write ----------------------------------------------------------------------------
def test_report_list_on_an_empty_file_writes_nothing(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert_one_line_error(run_fsrt("report", "--list", "--db", str(empty)), "is empty, not an fsrt results database")
    assert empty.read_bytes() == b"" and listing(tmp_path) == ["empty.db"]


def test_report_opens_the_database_read_only(tmp_path):
    db = tmp_path / "fsrt.db"
    _filled(db)
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    res = run_fsrt("report", "--list", "--db", str(db), "--json")
    assert res.code == 0 and [r["name"] for r in res.json()] == ["sweep"]
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before and no_temp_files(tmp_path)


# -- 25: two runs sharing a name ------------------------------------------------------------------------------------
def test_report_refuses_a_name_shared_by_two_runs_and_takes_an_id(tmp_path):
    db = tmp_path / "fsrt.db"
    with Store(db) as st:
        st.add_machine("m1", {"cpu": "x"})
        first = st.start_run("sweep", "m1", {"batch": 1})
        second = st.start_run("sweep", "m1", {"batch": 8})
        for run in (first, second):
            st.put_point(run, "m1", f"k{run}", _point(batch=run))
    res = run_fsrt("report", "sweep", "--db", str(db), "--out", str(tmp_path / "rep"))
    assert_one_line_error(res, "2 runs", "named 'sweep'", f"ids {first}, {second}")
    assert not (tmp_path / "rep").exists()
    by_id = run_fsrt("report", str(first), "--db", str(db), "--out", str(tmp_path / "rep"), "--json")
    assert by_id.code == 0, by_id.err
    assert [r["id"] for r in by_id.json()["runs"]] == [first]


# -- the schema-1 -> 2 migration under faults: all or nothing ------------------------------------------------------
FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store_v1.db"


def _v1_copy(tmp_path) -> Path:
    db = tmp_path / "old.db"
    shutil.copy(FIXTURE_V1, db)
    return db


def _v1_state(db) -> tuple:
    """Schema version, point columns and every point row: what a half-done migration would change."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        columns = [r[1] for r in con.execute("PRAGMA table_info(points)")]
        tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
        rows = con.execute("SELECT * FROM points ORDER BY id").fetchall()
        return version, columns, tables, rows
    finally:
        con.close()


def _migrates_cleanly(db) -> None:
    with Store(db) as st:
        runs = st.runs()
        assert len(st.run_points(runs[0]["id"])) == 8  # the fixture's points, all kept
    assert _v1_state(db)[0] == "2" and _integrity(db) == "ok"


def _half_migration(monkeypatch):
    """Make the 1 -> 2 step do its real work, then stop before the version is written."""
    real_step = store_module._migrate_1_to_2

    def step_then_interrupt(db):
        real_step(db)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "_migrate_1_to_2", step_then_interrupt)


def test_an_interrupted_migration_leaves_schema_1_untouched(tmp_path, monkeypatch):
    db = _v1_copy(tmp_path)
    before = _v1_state(db)
    _half_migration(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        Store(db)
    assert _v1_state(db) == before  # no new column, no new table, no changed point
    monkeypatch.undo()
    _migrates_cleanly(db)


def test_a_migration_killed_with_sigkill_is_rolled_back_on_the_next_open(tmp_path):
    db = _v1_copy(tmp_path)
    before = _v1_state(db)
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from fsrt.bench import store
real_step = store._migrate_1_to_2
def step_then_die(con):
    real_step(con)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind
store._migrate_1_to_2 = step_then_die
store.Store({str(db)!r})
"""], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "old.db-journal").exists()  # the rollback journal of the half-done migration
    con = sqlite3.connect(db)  # the next connection that reads rolls a hot journal back
    con.execute("SELECT COUNT(*) FROM meta").fetchone()
    con.close()
    assert _v1_state(db) == before  # nothing of the half-done migration stayed
    _migrates_cleanly(db)
    assert not (tmp_path / "old.db-journal").exists()


def test_disk_full_during_the_migration_is_one_line_and_keeps_schema_1(tmp_path, monkeypatch):
    db = _v1_copy(tmp_path)
    before = _v1_state(db)
    monkeypatch.setattr(sqlite3, "connect", _page_limited_connect(0))
    with pytest.raises(FsrtError, match="the disk is full") as info:
        Store(db)
    assert "what was stored before is intact" in str(info.value)
    assert _v1_state(db) == before
    monkeypatch.undo()
    _migrates_cleanly(db)


def test_a_locked_schema_1_database_is_locked_not_corrupt(tmp_path, monkeypatch):
    db = _v1_copy(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, time\n"
         f"con = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "con.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
        with pytest.raises(FsrtError, match=f"is locked by PID {holder.pid}"):
            Store(db)
    finally:
        holder.kill()
        holder.wait()
    assert _v1_state(db)[0] == "1"


def test_report_reads_a_schema_1_database_without_changing_it(tmp_path):
    db = _v1_copy(tmp_path)
    before = db.read_bytes()
    listed = run_fsrt("report", "--list", "--db", str(db), "--json")
    assert listed.code == 0, listed.err
    res = run_fsrt("report", "--db", str(db), "--out", str(tmp_path / "rep"))
    assert res.code == 0, res.err
    assert "median of one timing window (schema 1)" in (tmp_path / "rep" / "report.md").read_text()
    assert db.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["old.db", "rep"]  # upgraded in memory only
