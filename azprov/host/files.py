"""Writing files safely: atomic replace, exact modes and owners, no symlink following.

Below a `trusted` directory (a user's home, say) every component is opened
with O_NOFOLLOW relative to its parent's descriptor, so a symlink planted by
whoever owns that directory cannot redirect a write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Iterator, Optional

from azprov.errors import HostError
from azprov.treewalk import write_at

Owner = Optional[tuple[int, int]]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def open_directory(
    path: Path, *, trusted: Path | None = None, mode: int = 0o755, owner: Owner = None
) -> Iterator[int]:
    """Yield a descriptor for directory `path`, creating missing components.

    Components below `trusted` are never followed if they are symlinks and are
    created with `mode` and `owner`; `trusted` itself (and everything above it)
    is opened normally. Without `trusted`, the whole path is opened normally.
    """
    base = trusted if trusted is not None else path
    if trusted is None:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    rest = path.relative_to(base).parts if trusted is not None else ()
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in rest:
            try:
                os.mkdir(name, mode, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            try:
                next_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HostError(
                        f"refusing to write below {base / name}: it is a symlink or not a directory",
                        path=str(base / name),
                    ) from None
                raise
            os.close(fd)
            fd = next_fd
            if created:
                os.fchmod(fd, mode)
                if owner is not None:
                    os.fchown(fd, *owner)
        yield fd
    finally:
        os.close(fd)


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    owner: Owner = None,
    trusted: Path | None = None,
    dir_mode: int = 0o755,
) -> None:
    """Atomically write `path` (see `write_at`), creating its directory if needed."""
    with open_directory(path.parent, trusted=trusted, mode=dir_mode, owner=owner) as dir_fd:
        write_at(dir_fd, path.name, data, mode=mode, owner=owner)


def read_at(dir_fd: int, name: str, limit: int = 1 << 20) -> Optional[bytes]:
    """Read a regular file in an open directory without following a symlink; None if absent."""
    return read_regular(name, limit, dir_fd=dir_fd)


def read_regular(
    path: str | os.PathLike[str], limit: int, *, dir_fd: Optional[int] = None
) -> Optional[bytes]:
    """At most `limit` bytes of a regular file, never through a symlink.

    None when it is absent, a symlink (treated as absent: ours get replaced,
    theirs are not trusted), or not a regular file: O_NONBLOCK and the type
    check keep a FIFO or device planted in its place from hanging or feeding us.
    """
    try:
        fd = os.open(
            path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
        )
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limit)
    finally:
        os.close(fd)
