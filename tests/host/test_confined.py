"""The one door into an untrusted tree: nothing outside it is ever opened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.errors import FileTooLarge, UnsafePath
from azprov.host.confined import Confined, Links


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret"
    secret.parent.mkdir()
    secret.write_text("host secret\n")
    return secret


@pytest.fixture
def tree(tmp_path: Path) -> Confined:
    base = tmp_path / "tree"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "hostname").write_text("image\n")
    return Confined(base)


def test_a_link_in_the_last_component_to_a_host_file_is_resolved_inside_the_tree(
    tree: Confined, outside: Path
) -> None:
    (tree.path / "etc" / "shadow").write_text("tree shadow\n")
    os.symlink(str(outside), tree.path / "etc" / "uuid")  # absolute: /…/outside/secret
    assert tree.read("/etc/uuid", 100) is None  # no such path inside the tree
    os.symlink("/etc/shadow", tree.path / "etc" / "uuid2")
    assert tree.read("/etc/uuid2", 100) == b"tree shadow\n"


def test_a_link_is_refused_at_every_component_when_links_are_refused(
    tree: Confined, outside: Path
) -> None:
    os.symlink("hostname", tree.path / "etc" / "name")
    os.symlink("etc", tree.path / "config")
    with pytest.raises(UnsafePath, match="/etc/name is a symbolic link"):
        tree.read("/etc/name", 100, links=Links.REFUSE)
    with pytest.raises(UnsafePath, match="/config is a symbolic link"):
        tree.read("/config/hostname", 100, links=Links.REFUSE)
    assert tree.read("/etc/hostname", 100, links=Links.REFUSE) == b"image\n"


def test_dotdot_and_relative_links_never_climb_above_the_top(
    tree: Confined, outside: Path
) -> None:
    os.symlink("../../../../../../outside/secret", tree.path / "etc" / "up")
    assert tree.read("/etc/up", 100) is None
    assert tree.read("/../../outside/secret", 100) is None
    os.symlink("../..", tree.path / "etc" / "top")
    assert tree.read("/etc/top/etc/hostname", 100) == b"image\n"


def test_a_link_loop_is_refused_not_followed_forever(tree: Confined) -> None:
    os.symlink("b", tree.path / "a")
    os.symlink("a", tree.path / "b")
    with pytest.raises(UnsafePath, match="loop"):
        tree.read("/a", 100)


def test_a_fifo_or_a_device_is_refused_without_blocking(tree: Confined) -> None:
    os.mkfifo(tree.path / "etc" / "fifo")
    with pytest.raises(UnsafePath, match="a FIFO, not a regular file"):
        tree.read("/etc/fifo", 100)
    os.mknod(tree.path / "etc" / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    with pytest.raises(UnsafePath, match="a character device"):
        tree.read("/etc/zero", 100)
    with pytest.raises(UnsafePath, match="a directory"):
        tree.read("/etc", 100)


def test_a_file_over_its_cap_is_refused_whole_never_cut(tree: Confined) -> None:
    big = tree.path / "etc" / "big"
    with open(big, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: costs nothing to make
    with pytest.raises(FileTooLarge, match=r"/etc/big is 1073741824 bytes, more than the 4096"):
        tree.read("/etc/big", 4096)
    assert tree.read("/etc/hostname", 6) == b"image\n"
    with pytest.raises(FileTooLarge):
        tree.read("/etc/hostname", 5)


def test_a_missing_file_or_a_file_used_as_a_directory_reads_as_absent(tree: Confined) -> None:
    assert tree.read("/etc/missing", 10) is None
    assert tree.read("/etc/hostname/x", 10) is None
    assert tree.listdir("/nowhere") == []
    assert tree.stat("/nowhere/x") is None


def test_writes_through_a_linked_directory_stay_inside_the_tree(
    tree: Confined, outside: Path
) -> None:
    os.symlink(str(outside.parent), tree.path / "etc" / "sudoers.d")
    tree.write("/etc/sudoers.d/azprov", b"x", mode=0o440)
    assert sorted(os.listdir(outside.parent)) == ["secret"]
    assert (tree.path / str(outside.parent).lstrip("/") / "azprov").read_bytes() == b"x"


def test_a_link_below_a_trusted_directory_is_refused_for_writes(
    tree: Confined, outside: Path
) -> None:
    home = tree.path / "home" / "alice"
    home.mkdir(parents=True)
    os.symlink("/etc", home / ".ssh")
    with pytest.raises(UnsafePath, match=r"/home/alice/\.ssh is a symbolic link"):
        tree.write("/home/alice/.ssh/authorized_keys", b"k", trusted="/home")
    assert not (tree.path / "etc" / "authorized_keys").exists()


def test_a_link_at_the_final_name_is_replaced_by_a_write_not_followed(
    tree: Confined, outside: Path
) -> None:
    os.symlink(str(outside), tree.path / "etc" / "motd")
    tree.write("/etc/motd", b"new", mode=0o644)
    assert outside.read_text() == "host secret\n"
    assert not os.path.islink(tree.path / "etc" / "motd")


def test_lstat_readlink_and_remove_act_on_the_link_itself(tree: Confined, outside: Path) -> None:
    os.symlink(str(outside), tree.path / "etc" / "link")
    found = tree.lstat("/etc/link")
    assert found is not None and stat.S_ISLNK(found.st_mode)
    assert tree.stat("/etc/link") is None
    assert tree.readlink("/etc/link") == str(outside)
    assert tree.remove("/etc/link") is True
    assert outside.exists()
    assert tree.remove("/etc/link") is False


def test_glob_lists_inside_the_tree_only(tree: Confined, outside: Path) -> None:
    os.symlink(str(outside.parent), tree.path / "etc" / "d")
    (tree.path / "etc" / "a.conf").write_text("")
    (tree.path / "etc" / ".hidden.conf").write_text("")
    assert tree.glob("etc/*.conf") == ["etc/a.conf"]
    assert tree.glob("etc/d/*") == []


def test_a_path_object_outside_the_tree_is_refused(tree: Confined, outside: Path) -> None:
    with pytest.raises(UnsafePath, match="not inside the tree"):
        tree.read(outside, 100)
    assert tree.read(tree.path / "etc" / "hostname", 100) == b"image\n"


_NAMES = st.sampled_from(["a", "b", "etc", "..", ".", "x"])
_TARGETS = st.lists(_NAMES, min_size=0, max_size=4).map("/".join) | st.sampled_from(
    ["/", "/etc", "../../..", "/../outside"]
)


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    links=st.lists(st.tuples(_NAMES.filter(lambda n: n not in ("..", ".")), _TARGETS), max_size=6),
    lookup=st.lists(_NAMES, min_size=1, max_size=6).map("/".join),
    absolute=st.booleans(),
)
def test_any_web_of_links_reads_only_inside_the_tree(
    tmp_path_factory: pytest.TempPathFactory,
    links: list[tuple[str, str]],
    lookup: str,
    absolute: bool,
) -> None:
    top = tmp_path_factory.mktemp("web")
    (top / "outside").write_text("outside\n")
    base = top / "tree"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "x").write_text("inside\n")
    for name, target in links:
        here = base / "etc" if name == "etc" else base
        with_name = here / name if name != "etc" else base / "a"
        if not os.path.lexists(with_name):
            os.symlink(("/" if absolute else "") + (target or "."), with_name)
    tree = Confined(base)
    for path in (lookup, "etc/" + lookup):
        try:
            data = tree.read(path, 100)
        except (UnsafePath, FileTooLarge):
            continue
        assert data in (None, b"inside\n")
        tree.listdir(path)
        tree.stat(path)


def test_trusted_is_reached_through_its_own_links_and_nothing_below_it_follows_one(
    tree: Confined,
) -> None:
    """/home -> var/home (Silverblue's shape): the home is found through the link,
    and a link planted below it is still refused, however shallow the link above."""
    (tree.path / "var" / "home" / "alice").mkdir(parents=True)
    os.symlink("var/home", tree.path / "home")
    tree.write("/home/alice/.ssh/authorized_keys", b"k", trusted="/home/alice", mode=0o600)
    assert (tree.path / "var/home/alice/.ssh/authorized_keys").read_bytes() == b"k"
    os.symlink("/etc", tree.path / "var/home/alice/.config")
    with pytest.raises(UnsafePath, match=r"/var/home/alice/\.config is a symbolic link"):
        tree.write("/home/alice/.config/x", b"k", trusted="/home/alice")
    with pytest.raises(UnsafePath, match="is not below /home/alice"):
        tree.write("/home/alice/../bob/x", b"k", trusted="/home/alice")


def test_a_link_above_trusted_that_leads_shallower_does_not_let_one_below_it_through(
    tree: Confined,
) -> None:
    """/var/log -> /logs makes /var/log/azure two components deep, not three; the
    link planted below it must still be refused."""
    (tree.path / "logs" / "azure").mkdir(parents=True)
    (tree.path / "var").mkdir()
    os.symlink("/logs", tree.path / "var" / "log")
    os.symlink("/etc", tree.path / "logs" / "azure" / "ext")
    with pytest.raises(UnsafePath, match=r"/logs/azure/ext is a symbolic link"):
        tree.write("/var/log/azure/ext/x", b"k", trusted="/var/log/azure")
    assert not (tree.path / "etc" / "x").exists()


def test_a_path_with_a_nul_byte_is_unsafe_not_a_bare_value_error(tree: Confined) -> None:
    """An image's passwd can name a home with a NUL in it (found by review)."""
    with pytest.raises(UnsafePath, match=r"/home/azure\\0user/\.profile holds a NUL byte"):
        tree.read("/home/azure\0user/.profile", 100)
    with pytest.raises(UnsafePath, match="NUL"):
        tree.write("/home/azure\0user/x", b"")
