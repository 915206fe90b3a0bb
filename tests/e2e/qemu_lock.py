"""One qemu at a time on this machine: every emulated boot holds /tmp/qemu.lock.

Sessions share a 2-core machine; two TCG guests at once make both slow enough to
time out. The lock is the same one `flock /tmp/qemu.lock CMD` takes, so a run
wrapped that way already holds it: flock(2) locks belong to an open file, and a
second open of the same path in the child would wait for its own parent for ever.
Such a run is recognised by the lock's holder being this process or an ancestor, or
by an inherited descriptor of the lock file, and then no second lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

QEMU_LOCK = Path("/tmp/qemu.lock")


@contextlib.contextmanager
def qemu_lock(path: Path = QEMU_LOCK) -> Iterator[None]:
    """Hold `path`'s lock for the block, unless a caller of this process holds it."""
    if _held_for_us(path):
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _held_for_us(path: Path) -> bool:
    try:
        inode = path.stat().st_ino
    except FileNotFoundError:
        return False
    return _inherited(path, inode) or bool(_holders(inode) & _ancestors())


def _inherited(path: Path, inode: int) -> bool:
    """A descriptor of the lock file this process got from its parent (`flock FILE CMD`
    leaves it open in CMD)."""
    for entry in Path("/proc/self/fd").iterdir():
        try:
            if entry.stat().st_ino == inode and os.path.realpath(entry) == os.path.realpath(path):
                return True
        except OSError:
            continue
    return False


def _holders(inode: int) -> set[int]:
    """Processes holding a FLOCK on the file with this inode (from /proc/locks)."""
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (maj:min:inode)
        if (
            len(fields) >= 6
            and fields[1] == "FLOCK"
            and fields[4].isdigit()
            and fields[5].rsplit(":", 1)[-1] == str(inode)
        ):
            holders.add(int(fields[4]))
    return holders


def _ancestors() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            break
        parent = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "0"
        )
        pid = int(parent)
    return pids
