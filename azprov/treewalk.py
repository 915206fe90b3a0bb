"""Resolving a path inside an untrusted tree, one component at a time, from
descriptors: the engine under `azprov.confined`.

Each component is opened from a descriptor of the directory above it with
O_NOFOLLOW, so the kernel never follows a link on our behalf. A link is
either refused (`Links.REFUSE`) or resolved as if the tree were `/`
(`Links.IN_ROOT`, what openat2's RESOLVE_IN_ROOT does): an absolute target
restarts at the tree's top and `..` never climbs above it. `..` is taken from
our own stack of descriptors, never from the filesystem, so a directory moved
out from under a walk cannot lead above the top either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import os
import secrets
import stat
from collections import deque
from pathlib import Path
from typing import Optional, Union

from azprov.errors import HostError, UnsafePath

Owner = Optional[tuple[int, int]]
# A path inside the tree: "/etc/shadow" and "etc/shadow" are the same file;
# a `Path` must lie under the tree's own path (what `root / "/etc"` gives).
InTree = Union[str, "os.PathLike[str]"]

# As many link hops as Linux allows in one lookup (MAXSYMLINKS).
MAX_LINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


class Links(enum.Enum):
    """What to do with a symbolic link met on the way."""

    IN_ROOT = "resolve inside the tree"
    REFUSE = "refuse"


def kind_of(mode: int) -> str:
    """`a FIFO`, `a directory`…: what a non-regular file is, for messages."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def unreadable(shown: str, exc: OSError) -> HostError:
    return HostError(f"cannot read {shown}: {exc.strerror or exc}", path=shown)


@dataclasses.dataclass
class Walk:
    """One resolution of a path (`shown`, as components in `pending`) from `top`
    (a path, or a descriptor the walk takes over; `where` says where it lies).

        `last="dir"` ends on a directory: (its descriptor, ".", where). `last="entry"`
        ends on a name: (descriptor of its directory, the name, where the directory
        lies), the name's own link resolved too unless `follow_last` is False.
        Missing directories are created when `create` (with `mode` and `owner`).
        `..` never climbs above `top`. FileNotFoundError when a directory on the way is missing (or is a file) and
        is not to be created.
    """

    top: Union[str, int]
    shown: str
    pending: deque[str]
    links: Links
    last: str
    follow_last: bool = True
    create: bool = False
    mode: int = 0o755
    owner: Owner = None
    where: tuple[str, ...] = ()

    def run(self) -> tuple[int, str, tuple[str, ...]]:
        if isinstance(self.top, int):
            stack = [self.top]
        else:
            stack = [os.open(self.top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        names = list(self.where)  # where stack[-1] lies in the tree, for messages
        bottom = len(names)
        hops = 0
        try:
            while self.pending:
                name = self.pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(names) > bottom:
                        os.close(stack.pop())
                        names.pop()
                    continue
                if self.last == "entry" and not self.pending:
                    if not self.follow_last or not is_link(stack[-1], name):
                        return _keep_last(stack), name, tuple(names)
                else:
                    opened = self._open_dir(stack[-1], name)
                    if opened is not None:
                        stack.append(opened)
                        names.append(name)
                        continue
                hops += 1
                self._follow(stack, names, name, hops)
            # The path ended on a directory (`..`, the top, a link to a directory).
            return _keep_last(stack), ".", tuple(names)
        except BaseException as exc:
            for fd in stack:
                os.close(fd)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise unreadable(self.shown, exc) from None
            raise

    def _follow(self, stack: list[int], names: list[str], name: str, hops: int) -> None:
        """`name` in stack[-1] is a link: refuse it, or splice its target into the walk."""
        if self.links is Links.REFUSE:
            where = "/" + "/".join([*names, name])
            raise UnsafePath(
                f"{self.shown}: {where} is a symbolic link, which azprov does not follow there",
                path=self.shown,
            )
        if hops > MAX_LINK_HOPS:
            raise UnsafePath(f"{self.shown} is a symbolic link loop", path=self.shown)
        target = os.readlink(name, dir_fd=stack[-1])
        if target.startswith("/"):
            while len(stack) > 1:
                os.close(stack.pop())
            del names[len(self.where) :]
        self.pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))

    def _open_dir(self, parent: int, name: str) -> Optional[int]:
        """The directory `name` in `parent`, or None when it is a symbolic link."""
        created = False
        while True:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                break
            except FileNotFoundError:
                if not self.create:
                    raise
                try:
                    os.mkdir(name, self.mode, dir_fd=parent)
                    created = True
                except FileExistsError:
                    pass
                except OSError as exc:  # a read-only or full root: say what failed
                    raise HostError(
                        f"cannot create a directory for {self.shown}: {exc.strerror or exc}",
                        path=self.shown,
                    ) from None
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if is_link(parent, name):
                    return None
                if self.create:
                    raise UnsafePath(
                        f"{self.shown}: {name} is not a directory", path=self.shown
                    ) from None
                raise FileNotFoundError(errno.ENOTDIR, "not a directory", name) from None
        if created:
            os.fchmod(fd, self.mode)
            if self.owner is not None:
                os.fchown(fd, *self.owner)
        return fd


def is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _keep_last(stack: list[int]) -> int:
    """Close every descriptor on the stack but the deepest, and return that one."""
    while len(stack) > 1:
        os.close(stack.pop(0))
    return stack.pop()


class Rooted:
    """A directory tree, and how paths in it are named and walked."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(path))

    def parts(self, path: InTree) -> list[str]:
        """The components of `path` below the tree's top (`..` kept, to resolve)."""
        if isinstance(path, os.PathLike):
            host = Path(os.fspath(path))
            try:
                relative = host.relative_to(self.path)
            except ValueError:
                raise UnsafePath(
                    f"{host} is not inside the tree {self.path}", path=str(host)
                ) from None
            text = str(relative)
        else:
            text = path
        if "\0" in text:  # the kernel would refuse it too, as a bare ValueError
            shown = text.replace("\0", "\\0")[:120]
            raise UnsafePath(f"{shown} holds a NUL byte", path=shown)
        return [part for part in text.split("/") if part not in ("", ".")]

    def shown(self, path: InTree) -> str:
        """How a path looks from inside the tree (`/etc/hostname`), for messages."""
        return "/" + "/".join(self.parts(path))

    def host_path(self, path: InTree) -> Path:
        """Where `path` lies on the host, unresolved: for naming it to a tool that
        takes the tree's own top (`useradd --prefix`), never for opening it."""
        return self.path.joinpath(*self.parts(path))

    def _walk(
        self,
        path: InTree,
        *,
        links: Links,
        last: str,
        follow_last: bool = True,
        create: bool = False,
        mode: int = 0o755,
        owner: Owner = None,
        trusted: Optional[InTree] = None,
    ) -> tuple[int, str, tuple[str, ...]]:
        """See `treewalk.Walk`. With `trusted` (a directory `path` lies below) the walk
        goes to it as `links` says, then on from its descriptor refusing every
        link, and never climbs back above it: what the owner of a home planted
        there cannot steer a root write."""
        parts, shown = self.parts(path), self.shown(path)
        top: Union[str, int] = str(self.path)
        where: tuple[str, ...] = ()
        if trusted is not None:
            base = self.parts(trusted)
            if parts[: len(base)] != base or ".." in parts[len(base) :]:
                raise UnsafePath(f"{shown} is not below {self.shown(trusted)}", path=shown)
            top, _, where = Walk(
                top, self.shown(trusted), deque(base), links, "dir", create=create, mode=mode
            ).run()
            parts, links = parts[len(base) :], Links.REFUSE
        return Walk(
            top,
            shown,
            deque(parts),
            links,
            last,
            follow_last=follow_last,
            create=create,
            mode=mode,
            owner=owner,
            where=where,
        ).run()


def write_at(dir_fd: int, name: str, data: bytes, *, mode: int, owner: Owner = None) -> None:
    """Atomically replace `name` in the open directory: temp file, fsync, rename, fsync dir.

    The temp file is created O_EXCL|O_NOFOLLOW with the final mode, so the
    content is never readable by others, even for an instant. The rename
    replaces a symlink at `name` rather than following it.
    """
    temp = f".{name}.azprov-{secrets.token_hex(4)}"
    fd = os.open(
        temp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        try:
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)
