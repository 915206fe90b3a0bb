"""The descriptor-level primitives under the door: each works on a name in a directory
the door opened, and none follows a link or reads past its cap."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from azprov.errors import FileTooLarge
from azprov.host.files import create_at, is_temp_name, read_fd, remove_tree_at, write_at


@contextlib.contextmanager
def opened(path: Path, flags: int = os.O_RDONLY | os.O_DIRECTORY) -> Iterator[int]:
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def test_write_at_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched")
    (tmp_path / "target").symlink_to(victim)
    with opened(tmp_path) as dir_fd:
        write_at(dir_fd, "target", b"new", mode=0o600)
    assert victim.read_bytes() == b"untouched"
    assert not (tmp_path / "target").is_symlink()
    assert (tmp_path / "target").read_bytes() == b"new"
    assert (tmp_path / "target").stat().st_mode & 0o777 == 0o600


def test_the_temporary_name_of_write_at_is_recognised(tmp_path: Path) -> None:
    """What a kill between write_at's create and rename leaves is found by its name."""
    seen: list[str] = []
    real_rename = os.rename

    def rename(src: str, dst: str, **kwargs: int) -> None:
        seen.append(src)
        real_rename(src, dst, **kwargs)

    with opened(tmp_path) as dir_fd, pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", rename)
        write_at(dir_fd, "hostname", b"x\n", mode=0o644)
    assert len(seen) == 1 and is_temp_name(seen[0])
    for name in ("hostname", ".hostname", ".hostname.azprov-", ".hostname.azprov-xyz12345"):
        assert not is_temp_name(name), name


def test_create_at_never_replaces_nor_follows(tmp_path: Path) -> None:
    (tmp_path / "pool").write_bytes(b"records")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with opened(tmp_path) as dir_fd:
        assert create_at(dir_fd, "lock", 0o600) is True
        assert create_at(dir_fd, "lock", 0o600) is False
        assert create_at(dir_fd, "pool", 0o644) is False
        assert create_at(dir_fd, "link", 0o644) is False
    assert stat.S_IMODE((tmp_path / "lock").stat().st_mode) == 0o600
    assert (tmp_path / "pool").read_bytes() == b"records"
    assert not (tmp_path / "elsewhere").exists()


def test_remove_tree_at_removes_links_not_their_targets(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    tree = tmp_path / "state"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub/file").write_text("x")
    (tree / "to-outside").symlink_to(outside)
    with opened(tmp_path) as dir_fd:
        remove_tree_at(dir_fd, "state")
        remove_tree_at(dir_fd, "state")  # gone already is fine
    assert not tree.exists()
    assert (outside / "keep").read_text() == "keep"


def test_read_fd_refuses_past_its_cap_whatever_the_size_on_record(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    with opened(tmp_path / "f", os.O_RDONLY) as fd:
        assert read_fd(fd, 10, "/f") == b"0123456789"
        with pytest.raises(FileTooLarge, match="/f is 10 bytes, more than the 4"):
            read_fd(fd, 4, "/f")
        with pytest.raises(FileTooLarge, match="/f holds more than the 4 bytes"):
            read_fd(fd, 4, "/f", trust_size=False)
