"""Where new SSH host keys are made: a private directory in the target root's state dir.

ssh-keygen writes private keys; until they are installed they live in
`<root>/var/lib/azprov/hostkeys.tmp/run-<random>` (0700, root's), never in
the host's /tmp. A run killed at any point (SIGKILL, power loss) therefore
leaves its keys inside the image it was provisioning, in a directory only root
can read, on the image's own filesystem (so the install into /etc/ssh is a
rename). Each run holds an flock on its directory while it uses it; the next
run removes every directory that no live run holds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import stat
from typing import Optional

from azprov.confined import Confined, Links
from azprov.errors import HostError
from azprov.host.state import STATE_DIR
from azprov.treewalk import write_at

log = logging.getLogger(__name__)

WORK_DIR = f"{STATE_DIR}/hostkeys.tmp"
# A run's directory holds a key pair per type (and, for `ssh-keygen -A`, its
# etc/ssh below): deeper than this is nothing azprov made.
_MAX_DEPTH = 4
# An OpenSSH private key is at most about 13 KB (RSA-16384); read back only when
# the install cannot be a rename.
KEY_CAP = 64 << 10


def make_run_directory(root: Confined, held: contextlib.ExitStack) -> str:
    """A new directory for this run's keys (in-tree path), locked for as long as
    `held` is open; the directories of earlier runs that died are removed first."""
    with root.directory("/var/lib", mode=0o755, links=Links.REFUSE):
        pass  # made as a system directory: only azprov's own below it are private
    with root.directory(WORK_DIR, mode=0o700, links=Links.REFUSE) as top:
        os.fchmod(top, 0o700)  # whatever an earlier version or the image left
        os.fchown(top, 0, 0)
        # Held while stale directories go and this run's is made and locked: a run
        # starting beside this one cannot take the new directory for a stale one.
        fcntl.flock(top, fcntl.LOCK_EX)
        try:
            _remove_stale(root)
            path = f"{WORK_DIR}/run-{secrets.token_hex(8)}"
            fd = held.enter_context(root.directory(path, mode=0o700, links=Links.REFUSE))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            fcntl.flock(top, fcntl.LOCK_UN)
    return path


def remove_stale_runs(root: Confined) -> None:
    """Remove what killed runs left (their private keys among it); never raises."""
    try:
        if root.lstat(WORK_DIR, links=Links.REFUSE) is None:
            return
        with root.directory(WORK_DIR, create=False, links=Links.REFUSE) as top:
            fcntl.flock(top, fcntl.LOCK_EX)
            try:
                _remove_stale(root)
            finally:
                fcntl.flock(top, fcntl.LOCK_UN)
    except (HostError, OSError) as exc:
        log.warning("cannot remove what an earlier run left in %s: %s", WORK_DIR, exc)


def _remove_stale(root: Confined) -> None:
    for name in root.listdir(WORK_DIR, links=Links.REFUSE):
        path = f"{WORK_DIR}/{name}"
        found = root.lstat(path, links=Links.REFUSE)
        if found is None:
            continue
        if not stat.S_ISDIR(found.st_mode):
            root.remove(path, links=Links.REFUSE)
            continue
        with root.directory(path, create=False, links=Links.REFUSE) as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run's
            log.info("removing %s, left by an azprov run that did not finish", path)
            remove_tree(root, path)


def remove_tree(root: Confined, path: str, depth: int = 0) -> None:
    """Remove a directory azprov made and everything in it, never through a link."""
    if depth > _MAX_DEPTH:
        raise HostError(f"{path} is nested deeper than azprov makes it", path=path)
    for name in root.listdir(path, links=Links.REFUSE):
        child = f"{path}/{name}"
        found = root.lstat(child, links=Links.REFUSE)
        if found is not None and stat.S_ISDIR(found.st_mode):
            remove_tree(root, child, depth + 1)
        else:
            root.remove(child, links=Links.REFUSE)
    parent, _, name = path.rpartition("/")
    with (
        root.directory(parent, create=False, links=Links.REFUSE) as parent_fd,
        contextlib.suppress(FileNotFoundError),
    ):
        os.rmdir(name, dir_fd=parent_fd)


def move_keys(root: Confined, made: str, target_dir: str) -> list[str]:
    """Move every file in `made` (a run's directory) into `target_dir` as root's,
    private keys 0600 and public ones 0644, each synced first; all of them or,
    on a failure, none. Returns the names moved."""
    moved: list[str] = []
    with (
        root.directory(target_dir, mode=0o755) as target,
        root.directory(made, create=False, links=Links.REFUSE) as source,
    ):
        try:
            for name in root.listdir(made, links=Links.REFUSE):
                mode = 0o644 if name.endswith(".pub") else 0o600
                if _move_one(root, f"{made}/{name}", source, target, name, mode):
                    moved.append(name)
            os.fsync(target)
        except BaseException:
            for name in moved:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=target)
            raise
    return moved


def _move_one(root: Confined, path: str, source: int, target: int, name: str, mode: int) -> bool:
    with root.open_regular(path, links=Links.REFUSE) as fd:
        if fd is None:
            return False
        os.fchmod(fd, mode)
        os.fchown(fd, 0, 0)
        os.fsync(fd)
    try:
        os.rename(name, name, src_dir_fd=source, dst_dir_fd=target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # /var/lib and /etc/ssh on different filesystems: copy, then the original goes
        # with the run's directory.
        data: Optional[bytes] = root.read(path, KEY_CAP, links=Links.REFUSE)
        if data is None:
            return False
        write_at(target, name, data, mode=mode, owner=(0, 0))
    return True
