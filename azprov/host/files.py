"""Descriptor-level file operations under the door (`azprov.confined`): each works on
a name in a directory the door opened, never on a host path, never through a link.

`write_at` (atomic replace) lives with the walk in `azprov.treewalk`; here are the
rest: creating a file to lock in place, removing a tree, reading an open file up to
a cap, and telling `write_at`'s temporary files by their name.
"""

from __future__ import annotations

import os
import re
import stat

from azprov.errors import FileTooLarge
from azprov.treewalk import write_at

__all__ = ["TEMP_NAME", "create_at", "is_temp_name", "read_fd", "remove_tree_at", "write_at"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# The temporary name `write_at` gives a file before renaming it over `name`:
# `.{name}.azprov-` and eight hex digits. A process killed between the two
# leaves one behind; `stale_temp_files` finds them by this name.
TEMP_NAME = re.compile(r"\..+\.azprov-[0-9a-f]{8}")


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file `write_at` makes."""
    return TEMP_NAME.fullmatch(name) is not None


def create_at(dir_fd: int, name: str, mode: int) -> bool:
    """Create `name` as an empty regular file in the open directory unless something
    is there already (never replaced, never followed); True when it was created.

    For files several processes open and lock in place (the KVP pool, the run
    lock): an atomic replace would leave each holding a lock on its own copy.
    """
    try:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=dir_fd,
        )
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, mode)  # whatever the umask
    finally:
        os.close(fd)
    return True


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove `name` from the open directory: a file or a link itself, or a directory
    and everything in it, each entry from its parent's descriptor, no link followed."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    except PermissionError:  # what unlink(2) of a directory gives on Linux (EISDIR elsewhere)
        if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            children = [entry.name for entry in entries]
        for child in children:
            remove_tree_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def read_fd(fd: int, cap: int, shown: str, *, trust_size: bool = True) -> bytes:
    """All of an open regular file, from its start; FileTooLarge (naming `shown`) past
    `cap` bytes, never a cut copy. The size on record refuses a large file unread
    unless `trust_size` is False (sysfs gives 4096 for every attribute); either way
    the read itself stops one byte past the cap, so a file that grows cannot feed us."""
    size = os.fstat(fd).st_size
    if trust_size and size > cap:
        raise FileTooLarge(
            f"{shown} is {size} bytes, more than the {cap} azprov reads for it",
            path=shown,
            size=size,
        )
    chunks: list[bytes] = []
    total = 0
    while total <= cap:
        chunk = os.pread(fd, min(cap + 1 - total, 1 << 20), total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > cap:
        raise FileTooLarge(
            f"{shown} holds more than the {cap} bytes azprov reads for it", path=shown
        )
    return b"".join(chunks)
