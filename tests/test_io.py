"""Atomic writes: a failed write leaves the old file and no temp files; a good one gets the umask mode."""

import os

import pytest

from fsrt.io import atomic_write_text, atomic_writer, current_umask


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_successful_write_replaces_and_uses_the_umask_mode(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "out.txt", "new")
    assert target.read_text() == "new"
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~current_umask()
    assert os.listdir(target.parent) == ["out.txt"]
