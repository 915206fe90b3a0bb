"""Absent is not unreadable: a FIFO, a link loop or a directory where a file should be is unknown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from azprov.checks.tree import Tree
from azprov.host.root import TargetRoot
from tests.checks.trees import findings, good_tree, link, write


def fifo(root: Path, relative: str) -> None:
    (root / relative).unlink()
    os.mkfifo(root / relative)


def loop(root: Path, relative: str) -> None:
    (root / relative).unlink()
    link(root, relative, relative.rsplit("/", 1)[1] + ".loop")
    link(root, relative + ".loop", relative.rsplit("/", 1)[1])


def directory(root: Path, relative: str) -> None:
    (root / relative).unlink()
    (root / relative).mkdir()


@pytest.mark.parametrize(
    ("check_id", "relative", "breaker", "why"),
    [
        ("passwords-locked", "etc/shadow", fifo, "a FIFO"),
        ("fstab-boot-safe", "etc/fstab", loop, "a link loop"),
        ("swap-os-disk", "etc/fstab", fifo, "a FIFO"),
        ("leftover-users-sudoers", "etc/passwd", directory, "a directory"),
        ("authorized-keys", "etc/passwd", fifo, "a FIFO"),
        ("shell-history", "etc/passwd", loop, "a link loop"),
        ("hostname-generic", "etc/hostname", fifo, "a FIFO"),
        ("sudo-policy", "etc/sudoers", fifo, "a FIFO"),
        ("machine-id", "etc/machine-id", loop, "a link loop"),
        ("sshd-effective-config", "etc/ssh/sshd_config", fifo, "a FIFO"),
        ("sshd-effective-config", "etc/ssh/sshd_config.d/10-site.conf", fifo, "a FIFO"),
    ],
)
def test_unreadable_essential_file_is_unknown(
    tmp_path: Path, check_id: str, relative: str, breaker, why: str
) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/10-site.conf", "PermitEmptyPasswords no\n")
    write(root, "etc/ssh/sshd_config.d/20-site.conf", "PermitEmptyPasswords yes\n")
    if check_id == "sshd-effective-config":
        # The later drop-in's value is only a fact while the earlier one can be read.
        assert [f.found for f in findings(root, check_id)] == []
    breaker(root, relative)
    found = [(f.severity, f.path, f.found) for f in findings(root, check_id)]
    assert found == [("info", relative, f"unknown: {relative} is {why}")]


def test_tree_tells_absent_from_unreadable(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, "etc/regular", "x\n")
    link(root, "etc/dangling", "/nowhere")
    link(root, "etc/up", "../../../etc/regular")  # `..` stops at the top of the tree
    link(root, "etc/self", "self")
    os.mkfifo(root / "etc/pipe")
    tree = Tree(TargetRoot(root))
    assert [tree.unreadable(p) for p in ("etc/regular", "etc/up", "etc/missing")] == [None] * 3
    assert tree.unreadable("etc/dangling") is None
    assert tree.unreadable("etc/regular/below") is None
    assert tree.unreadable("etc/self") == "a link loop"
    assert tree.unreadable("etc/pipe") == "a FIFO"
    assert tree.unreadable("etc") == "a directory"


def test_unreadable_machine_id_does_not_decide_the_first_boot(tmp_path: Path) -> None:
    """A disabling preset matters only on a first boot, which a FIFO machine-id leaves open."""
    root = good_tree(tmp_path / "root")
    write(root, "usr/lib/systemd/system-preset/99-default.preset", "disable *\n")
    fifo(root, "etc/machine-id")
    found = [(f.severity, f.found) for f in findings(root, "prov-unit-enabled")]
    assert found == [("info", "unknown: etc/machine-id is a FIFO")]
