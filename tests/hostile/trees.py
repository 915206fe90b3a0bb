"""Hostile target trees: an image whose files are links out of it, loops, FIFOs,
devices, huge sparse files, unreadable directories, or of the wrong kind.

Every link out of the tree points into a *canary*: a directory beside the tree,
made as a copy of it with a marker line at the top of every file, so that a
command that follows such a link finds a plausible file (a `shadow`, an
`sshd_config`) to read or to write, and the trace shows it (see tracing.py).
The marker is content only, never in a path: when it shows up in what a command
printed, wrote into the tree or sent to the fabric, the command read the canary.

The planted paths are the ones azprov reads or writes (gathered by grepping
azprov/ for the paths passed to the root's read/write/glob/open_regular, and to
check's tree.read_*), with the directories on the way to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Optional

from hypothesis import strategies as st

MARKER = "AZPROV-CANARY-7f3c1e"

# Files azprov reads or writes in a target root (provision, deprovision, check).
FILES = (
    "etc/shadow",
    "etc/passwd",
    "etc/group",
    "etc/gshadow",
    "etc/login.defs",
    "etc/hostname",
    "etc/hosts",
    "etc/machine-id",
    "etc/os-release",
    "etc/fstab",
    "etc/default/grub",
    "etc/sudoers",
    "etc/sudoers.d/90-azprov-azureuser",
    "etc/ssh/sshd_config",
    "etc/ssh/sshd_config.d/50-cloud-init.conf",
    "etc/ssh/ssh_host_ed25519_key",
    "etc/ssh/ssh_host_ed25519_key.pub",
    "etc/azprov/azprov.conf",
    "etc/netplan/50-cloud-init.yaml",
    "etc/cloud/cloud.cfg",
    "etc/systemd/system/azure-provisioning.service",
    "etc/systemd/system/multi-user.target.wants/azure-provisioning.service",
    "sys/class/dmi/id/product_uuid",
    "var/lib/hyperv/.kvp_pool_1",
    "var/lib/azprov/provisioned.json",
    "var/lib/azprov/last-run.json",
    "var/lib/azprov/created-user.json",
    "var/lib/azprov/custom-data",
    "var/lib/waagent/ovf-env.xml",
    "var/lib/dbus/machine-id",
    "var/lib/dpkg/status",
    "var/lib/rpm/Packages",
    "var/lib/dhcp/dhclient.eth0.leases",
    "home/azureuser/.ssh/authorized_keys",
    "home/azureuser/.bash_history",
    "root/.bash_history",
    "boot/grub/grub.cfg",
    "boot/vmlinuz-6.1.0-99-cloud-amd64",
    "boot/initrd.img-6.1.0-99-cloud-amd64",
)
# Directories azprov lists, creates or writes in.
DIRECTORIES = (
    "etc",
    "etc/ssh",
    "etc/ssh/sshd_config.d",
    "etc/sudoers.d",
    "etc/azprov/azprov.conf.d",
    "etc/netplan",
    "etc/systemd/system",
    "etc/systemd/system/multi-user.target.wants",
    "home",
    "home/azureuser",
    "home/azureuser/.ssh",
    "sys/class/dmi/id",
    "var/lib/azprov",
    "var/lib/hyperv",
    "var/lib/waagent",
    "var/lib/rpm",
    "var/lib/dhcp",
    "boot",
    "boot/loader/entries",
    "usr/lib/modules",
)

# What a planting does to its path (all in the tree, never in the canary).
LINK_KINDS = (
    "absolute link out",  # -> /…/canary/<path>
    "relative link out",  # -> ../../../canary/<path>
    "component link out",  # a directory on the way -> the canary's, absolute or relative
    "link to itself",
    "link loop of two",
    "link to /dev/zero",  # outside the tree; in it, /dev/zero is absent
    "component link climbing above /",  # ../../…/../<canary>/<path>: `..` past the top
)
OTHER_KINDS = (
    "FIFO",
    "zero device",  # mknod c 1 5: what /dev/zero is
    "sparse 4 GiB",
    "sparse 1.9 GB",  # just under a 2 GiB cap: big enough to hurt when copied
    "unreadable directory",  # mode 000 on the directory holding it (root passes anyway)
    "directory instead of file",
    "file instead of directory",
    "absent",  # another branch: no dpkg status, so check asks the rpm database
)
KINDS = LINK_KINDS + OTHER_KINDS
_FILE_KINDS = ("FIFO", "zero device", "sparse 4 GiB", "sparse 1.9 GB", "directory instead of file")
SPARSE_SIZES = {"sparse 4 GiB": 4 << 30, "sparse 1.9 GB": 1_900_000_000}


@dataclasses.dataclass(frozen=True)
class Planting:
    """One hostile thing at one path of the tree."""

    path: str
    kind: str
    depth: int = 0  # for the component kinds: which directory on the way (0 = the top one)
    absolute: bool = True  # for "component link out": an absolute or a relative link

    def __str__(self) -> str:
        if self.kind.startswith("component"):
            where = "/".join(self.path.split("/")[: self.on_the_way() + 1])
            how = "absolute" if self.absolute else "relative"
            return f"{where} ({how}, on the way to {self.path}): {self.kind}"
        return f"{self.path}: {self.kind}"

    def on_the_way(self) -> int:
        """The index of the component replaced (never the last one)."""
        parts = self.path.split("/")
        return min(self.depth, max(len(parts) - 2, 0))


@st.composite
def plantings(draw: st.DrawFn, most: int = 3) -> list[Planting]:
    """One to `most` hostile things, each at a path azprov touches."""
    count = draw(st.integers(1, most))
    found: list[Planting] = []
    for _ in range(count):
        kind = draw(st.sampled_from(KINDS))
        if kind == "file instead of directory":
            path = draw(st.sampled_from(DIRECTORIES))
        elif kind in _FILE_KINDS:
            path = draw(st.sampled_from(FILES))
        elif kind.startswith("component"):
            path = draw(st.sampled_from([p for p in FILES + DIRECTORIES if "/" in p]))
        else:
            path = draw(st.sampled_from(FILES + DIRECTORIES))
        found.append(Planting(path, kind, draw(st.integers(0, 4)), draw(st.booleans())))
    return found


# -- making a tree hostile -------------------------------------------------------------------


def make_canary(tree: Path, canary: Path, paths: list[str]) -> None:
    """The canary: a copy of `tree` (links kept as links) with `MARKER` on the first
    line of every regular file, and every path about to be planted present in it."""
    shutil.copytree(tree, canary, symlinks=True)
    for path in paths:
        _ensure(canary, path)
    for directory, _, names in os.walk(canary):
        for name in names:
            target = Path(directory, name)
            if target.is_file() and not target.is_symlink():
                target.write_bytes(f"{MARKER}\n".encode() + target.read_bytes())
    # A file that is nothing but a secret, for the links that point at the top of it.
    (canary / "SECRET").write_text(f"{MARKER} the host's secret\n")


def plant(tree: Path, canary: Path, planting: Planting) -> None:
    """Make `planting` true in `tree` (whatever was at its path goes)."""
    path = planting.path
    if not _ensure(tree, path):
        return  # an earlier planting already stands in its way
    if planting.kind.startswith("component"):
        path = "/".join(path.split("/")[: planting.on_the_way() + 1])
    here = tree / path
    name = here.name
    if planting.kind == "unreadable directory":
        here.parent.chmod(0)
        return
    _remove(here)
    if planting.kind in ("absolute link out", "component link out") and (
        planting.absolute or planting.kind == "absolute link out"
    ):
        here.symlink_to(canary / path)
    elif planting.kind in ("relative link out", "component link out"):
        here.symlink_to(os.path.relpath(canary / path, here.parent))
    elif planting.kind == "link to itself":
        here.symlink_to(name)
    elif planting.kind == "link loop of two":
        partner = here.parent / f"{name}.loop"
        _remove(partner)
        here.symlink_to(partner.name)
        partner.symlink_to(name)
    elif planting.kind == "link to /dev/zero":
        here.symlink_to("/dev/zero")
    elif planting.kind == "component link climbing above /":
        climb = [".."] * (len(here.parent.parts) + 2)  # two more than reach /
        here.symlink_to("/".join([*climb, str(canary / path).lstrip("/")]))
    else:
        _plant_other(here, planting.kind)


def _plant_other(here: Path, kind: str) -> None:
    if kind == "FIFO":
        os.mkfifo(here)
    elif kind == "zero device":
        os.mknod(here, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    elif kind in SPARSE_SIZES:
        here.write_bytes(b"# the head of a file that is mostly a hole\n")
        os.truncate(here, SPARSE_SIZES[kind])
    elif kind == "directory instead of file":
        here.mkdir()
        (here / "inside").write_text("a file where a file was expected one level up\n")
    elif kind == "file instead of directory":
        here.write_text("a file where a directory was expected\n")
    elif kind != "absent":
        raise ValueError(f"unknown planting kind {kind!r}")


def _ensure(top: Path, path: str) -> bool:
    """`path` exists under `top` (as a directory when it is one of DIRECTORIES);
    False when an earlier planting made it unreachable (a file or a link on the way)."""
    here = top
    for part in Path(path).parts[:-1]:
        here = here / part
        if here.is_symlink() or (here.exists() and not here.is_dir()):
            return False
    here = top / path
    here.parent.mkdir(parents=True, exist_ok=True)
    if here.is_symlink() or here.exists():
        return True
    if path in DIRECTORIES:
        here.mkdir()
    else:
        here.write_text(f"# {path}, planted for the hostile-tree test\n")
    return True


def _remove(here: Path) -> None:
    if here.is_symlink() or here.is_file() or _is_special(here):
        here.unlink()
    elif here.is_dir():
        shutil.rmtree(here)


def _is_special(here: Path) -> bool:
    try:
        mode = here.lstat().st_mode
    except FileNotFoundError:
        return False
    return not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode))


def open_up(tree: Path) -> None:
    """Give every directory under `tree` its mode back, so it can be inspected and removed."""
    tree.chmod(0o755)
    for directory, names, _ in os.walk(tree):
        for name in names:
            here = Path(directory, name)
            if not here.is_symlink():
                here.chmod(0o755)


# -- what changed ----------------------------------------------------------------------------


def fingerprint(top: Path, limit: int = 1 << 20) -> dict[str, str]:
    """path -> kind, mode, owner, size, mtime and content digest (of a regular file
    up to `limit` bytes: a sparse 4 GiB one is told by size and mtime) of everything
    under `top`, links not followed: any change shows."""
    found: dict[str, str] = {}
    for directory, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            here = Path(directory, name)
            info = here.lstat()
            digest = ""
            if stat.S_ISREG(info.st_mode) and info.st_size <= limit:
                digest = hashlib.sha256(here.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                digest = os.readlink(here)
            found[str(here.relative_to(top))] = (
                f"{stat.filemode(info.st_mode)} {info.st_uid}:{info.st_gid} "
                f"{info.st_size} {info.st_mtime_ns} {digest}"
            )
    return found


def holding_marker(tree: Path, limit: int = 1 << 20) -> list[str]:
    """Regular files in `tree` (not through links, none larger than `limit`) whose
    content has the canary's marker: what a command copied in from outside."""
    found: list[str] = []
    for directory, _, names in os.walk(tree):
        for name in names:
            here = Path(directory, name)
            try:
                info = here.lstat()
            except OSError:
                continue
            small = stat.S_ISREG(info.st_mode) and info.st_size <= limit
            if small and MARKER.encode() in here.read_bytes():
                found.append(str(here.relative_to(tree)))
    return found


def inodes(top: Path) -> set[tuple[int, int]]:
    """(device, inode) of everything under `top`, and of `top` itself."""
    found = {(top.lstat().st_dev, top.lstat().st_ino)}
    for directory, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            info = Path(directory, name).lstat()
            found.add((info.st_dev, info.st_ino))
    return found


def leftovers(directory: Path) -> Optional[list[str]]:
    """What is left in `directory` (a command's TMPDIR), or None when it is empty."""
    names = sorted(os.listdir(directory))
    return names or None
