"""Reading and writing files under the target root without being tricked by what is there."""

from __future__ import annotations

import os
import time
from pathlib import Path

from azprov.host.files import read_regular, write_atomic


def test_a_regular_file_is_read_up_to_the_cap(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert read_regular(tmp_path / "f", 4) == b"0123"
    assert read_regular(tmp_path / "f", 100) == b"0123456789"


def test_absent_symlinked_fifo_and_directory_read_as_absent(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    started = time.monotonic()
    for name in ("missing", "link", "fifo", "dir", "real/below-a-file"):
        assert read_regular(tmp_path / name, 100) is None, name
    assert time.monotonic() - started < 1  # the FIFO never blocks


def test_read_relative_to_an_open_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_regular("f", 10, dir_fd=fd) == b"x"
    finally:
        os.close(fd)


def test_write_atomic_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / "target").symlink_to(victim)
    write_atomic(tmp_path / "target", b"new", mode=0o600)
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "target").is_symlink()
    assert (tmp_path / "target").read_bytes() == b"new"
    assert (tmp_path / "target").stat().st_mode & 0o777 == 0o600
