"""Writing under faults: a report folder appears whole or not at all (disk full at any file, an
unwritable place), an existing folder keeps its old files until the new ones are all staged,
and files read as text say so when they are not text."""

from __future__ import annotations

import errno
import os

import pytest
from fault_helpers import files_snapshot, listing, no_temp_files, run_main, unwritable_folder

from conftest import assert_one_line_error, run_fsrt
from fsrt.bench.points import Point
from fsrt.bench.store import Store
from fsrt.errors import FsrtError
from fsrt.io import atomic_write_bytes, read_text_file, refuse_existing, write_folder

FILES = {"a.txt": b"alpha", "plots/b.png": b"\x89PNG beta", "c.json": b"{}"}


def _disk_full_at(monkeypatch, nth: int) -> None:
    """``os.fsync`` fails with ENOSPC from its ``nth`` call on (where delayed allocation reports it)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_disk_full_leaves_no_new_folder(tmp_path, monkeypatch, nth):
    _disk_full_at(monkeypatch, nth)
    with pytest.raises(FsrtError, match="No space left on device") as info:
        write_folder(tmp_path / "deep" / "report", FILES, "the report folder")
    assert "nothing was written" in str(info.value)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("nth", [1, 3])
def test_disk_full_keeps_an_existing_folder_as_it_was(tmp_path, monkeypatch, nth):
    out = tmp_path / "report"
    write_folder(out, FILES, "the report folder")
    (out / "notes.txt").write_text("mine")
    before = files_snapshot(out)
    _disk_full_at(monkeypatch, nth)
    with pytest.raises(FsrtError, match="No space left on device"):
        write_folder(out, {k: v + b" new" for k, v in FILES.items()}, "the report folder")
    assert files_snapshot(out) == before and no_temp_files(out) and no_temp_files(tmp_path)


def test_write_folder_writes_everything_with_the_usual_modes(tmp_path):
    from fsrt.io import current_umask

    paths = write_folder(tmp_path / "new", FILES, "the report folder")
    assert {k: p.read_bytes() for k, p in paths.items()} == FILES
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o777 & ~current_umask()
    assert os.stat(paths["a.txt"]).st_mode & 0o777 == 0o666 & ~current_umask()
    assert listing(tmp_path) == ["new", "new/a.txt", "new/c.json", "new/plots", "new/plots/b.png"]
    write_folder(tmp_path / "new", {"a.txt": b"again"}, "the report folder")  # replaces one, keeps the rest
    assert files_snapshot(tmp_path / "new") == {**FILES, "a.txt": b"again"}


def test_a_failed_atomic_write_removes_the_folders_it_made(tmp_path, monkeypatch):
    _disk_full_at(monkeypatch, 1)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "a" / "b" / "out.bin", b"data")
    assert listing(tmp_path) == []


# -- report --out on a full disk or an unwritable place ----------------------------------------------------------
@pytest.fixture
def one_run_db(tmp_path):
    db = tmp_path / "fsrt.db"
    with Store(db) as st:
        st.add_machine("m1", {"cpu": "x"})
        run = st.start_run("sweep", "m1", {})
        for s, ms in ((1.0, 1.0), (2.0, 1.8)):
            st.put_point(run, "m1", f"k{s}", Point(model=f"m@{s}", strategy="w", s=s, runtime="eager", mode="infer",
                                                   precision="fp32", batch=1, flops=int(10 * s), params=2,
                                                   acts=int(3 * s), status="ok", latency_ms=ms, mkey=f"k{s}"))
        st.finish_run(run)
    return db


def test_report_out_on_a_full_disk_is_one_line_and_leaves_no_folder(one_run_db, tmp_path, capsys, monkeypatch):
    _disk_full_at(monkeypatch, 2)
    out = tmp_path / "rep"
    res = run_main(capsys, "report", "--db", str(one_run_db), "--out", str(out))
    assert_one_line_error(res, "cannot write the report folder", "No space left on device")
    assert not out.exists() and no_temp_files(tmp_path)


def test_report_out_in_an_unwritable_place_is_one_line(one_run_db):
    res = run_fsrt("report", "--db", str(one_run_db), "--out", str(unwritable_folder() / "rep"))
    assert_one_line_error(res, "cannot write the report folder")


# -- reading text, and the overwrite rule ----------------------------------------------------------------------------
def test_read_text_file_says_what_is_wrong(tmp_path):
    good = tmp_path / "s.yaml"
    good.write_text("family: regnetx\n", encoding="utf-8")
    assert read_text_file(good, "spec file") == "family: regnetx\n"
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"ok\xff\xfe")
    with pytest.raises(FsrtError, match=r"spec file .*b.yaml is not UTF-8 text \(byte 0xff at offset 2\)"):
        read_text_file(binary, "spec file")
    with pytest.raises(FsrtError, match="cannot read recipe file .*missing.yaml: No such file"):
        read_text_file(tmp_path / "missing.yaml", "recipe file")


def test_binary_recipe_is_an_fsrt_error(tmp_path):
    from fsrt.train.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    with pytest.raises(FsrtError, match="recipe file .* is not UTF-8 text"):
        load_recipe(str(recipe))


def test_refuse_existing(tmp_path):
    target = tmp_path / "x.yaml"
    assert refuse_existing(target, force=False) == target
    target.write_text("old")
    with pytest.raises(FsrtError, match="exists; pass --force"):
        refuse_existing(target, force=False)
    assert refuse_existing(target, force=True) == target
    with pytest.raises(FsrtError, match="is a folder"):
        refuse_existing(tmp_path, force=True)


def test_check_writable_folder_probes_without_leaving_anything(tmp_path):
    from fsrt.io import check_writable_folder

    assert check_writable_folder(tmp_path / "a" / "b", "the run folder") == tmp_path / "a" / "b"
    assert listing(tmp_path) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(FsrtError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "f" / "run", "the run folder")
    with pytest.raises(FsrtError, match="cannot write into the run folder"):
        check_writable_folder(unwritable_folder() / "run", "the run folder")


def test_a_disk_full_hidden_by_torch_save_is_reported_as_disk_full(tmp_path, monkeypatch):
    """torch.save swallows the OSError of a failed write and raises "unexpected pos"; the atomic
    writer still reports No space left on device, naming the file, and leaves nothing."""
    import torch

    from fsrt import io as fsrt_io
    from fsrt.io import atomic_writer

    real_fdopen = os.fdopen

    class FillsUp:
        """A file on a disk with 4 KiB left."""

        def __init__(self, f):
            self.f, self.left = f, 4096

        def write(self, data):
            if len(data) > self.left:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fsrt_io.os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    target = tmp_path / "run" / "last.pt"
    with pytest.raises(OSError) as info:
        with atomic_writer(target) as f:
            torch.save({"w": torch.zeros(100_000)}, f)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert "unexpected pos" in str(info.value.__cause__)  # what torch raised instead
    assert listing(tmp_path) == []


def test_atomic_writer_keeps_the_callers_own_errors(tmp_path):
    from fsrt.io import atomic_writer

    with pytest.raises(FileNotFoundError) as info:
        with atomic_writer(tmp_path / "out.bin") as f:
            f.write(b"x")
            (tmp_path / "missing-input").read_bytes()
    assert info.value.filename == str(tmp_path / "missing-input")
    assert listing(tmp_path) == []


def test_write_failure_states_each_reason_once():
    import errno

    from fsrt.errors import write_failure

    for code, reason in ((errno.EROFS, "read-only"), (errno.ENOSPC, "no space"), (errno.EACCES, "denied")):
        text = str(write_failure(OSError(code, os.strerror(code)), "out.onnx")).lower()
        assert text.startswith("cannot write out.onnx: ") and text.count(reason) == 1, text
