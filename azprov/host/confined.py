"""The one door into a directory tree azprov does not trust: every read, listing
and write below a root goes through here.

Paths are resolved one component at a time from a descriptor of the directory
above, each opened with O_NOFOLLOW, so the kernel never follows a link on our
behalf. A link is either refused (`Links.REFUSE`) or resolved as if the tree
were `/` (`Links.IN_ROOT`, what openat2's RESOLVE_IN_ROOT does): an absolute
target restarts at the tree's top and `..` never climbs above it. Either way
nothing outside the tree is opened, whatever the tree holds and however it
changes while we walk it. `..` is taken from our own stack of descriptors,
never from the filesystem, so a directory moved out from under a walk cannot
lead above the top either.

A file is read only when it is a regular file (a FIFO or device planted in its
place neither hangs nor feeds us), and never past the cap its caller chose:
a larger file is refused whole with `FileTooLarge`, never cut.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fnmatch
import os
import stat
from collections import deque
from pathlib import Path
from typing import Iterator, Optional, Union

from azprov.errors import FileTooLarge, HostError, UnsafePath

# A path inside the tree: "/etc/shadow" and "etc/shadow" are the same file;
# a `Path` must lie under the tree's own path (what `root / "/etc"` gives).
InTree = Union[str, "os.PathLike[str]"]
Owner = Optional[tuple[int, int]]

# As many link hops as Linux allows in one lookup (MAXSYMLINKS).
MAX_LINK_HOPS = 40
# Directory listings larger than this are refused: no directory azprov reads
# (sshd_config.d, /home, a handler's status folder, /usr/lib/modules/…) comes
# near it, and a crafted one with millions of entries must not eat the memory.
MAX_ENTRIES = 100_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_GLOB_CHARS = frozenset("*?[")
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


class Confined:
    """A directory tree that no path may leave: the target root, a mounted CD,
    an extension's staging folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(path))

    # -- naming -----------------------------------------------------------------

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
        return [part for part in text.split("/") if part not in ("", ".")]

    def shown(self, path: InTree) -> str:
        """How a path looks from inside the tree (`/etc/hostname`), for messages."""
        return "/" + "/".join(self.parts(path))

    def host_path(self, path: InTree) -> Path:
        """Where `path` lies on the host, unresolved: for naming it to a tool that
        takes the tree's own top (`useradd --prefix`), never for opening it."""
        return self.path.joinpath(*self.parts(path))

    # -- the walk -----------------------------------------------------------------

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
        """Resolve `path`: (descriptor, ".") for a directory (`last="dir"`), or
        (descriptor of its directory, final name) for `last="entry"`; a final
        link is resolved too unless `follow_last` is False. The third item is
        where the descriptor's directory lies in the tree, as components.

        Directories that are missing are created when `create` (with `mode`
        and `owner`); below `trusted` links are refused whatever `links` says
        (a user's home: what its owner planted must not steer a root write).
        FileNotFoundError when a directory on the way is missing (or is a
        file) and not to be created.
        """
        shown = self.shown(path)
        pending = deque(self.parts(path))
        strict_from = len(self.parts(trusted)) if trusted is not None else None
        stack = [os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        names: list[str] = []  # the tree-relative path of stack[-1], for messages
        hops = 0
        try:
            while pending:
                name = pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                        names.pop()
                    continue
                if last == "entry" and not pending:
                    if not follow_last or not _is_link(stack[-1], name):
                        return _pop_all_but_last(stack), name, tuple(names)
                else:
                    opened = self._open_dir(stack[-1], name, create, mode, owner, shown)
                    if opened is not None:
                        stack.append(opened)
                        names.append(name)
                        continue
                # `name` is a symbolic link.
                if links is Links.REFUSE or (
                    strict_from is not None and len(names) >= strict_from
                ):
                    where = "/" + "/".join([*names, name])
                    raise UnsafePath(
                        f"{shown}: {where} is a symbolic link, which azprov does not follow there",
                        path=shown,
                    )
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise UnsafePath(f"{shown} is a symbolic link loop", path=shown)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                pending.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
            # The path ended on a directory (`..`, the top, a link to a directory).
            return _pop_all_but_last(stack), ".", tuple(names)
        except BaseException as exc:
            for fd in stack:
                os.close(fd)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise _unreadable(shown, exc) from None
            raise

    @staticmethod
    def _open_dir(
        parent: int, name: str, create: bool, mode: int, owner: Owner, shown: str
    ) -> Optional[int]:
        """The directory `name` in `parent`, or None when it is a symbolic link."""
        created = False
        while True:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                break
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, mode, dir_fd=parent)
                    created = True
                except FileExistsError:
                    pass
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if _is_link(parent, name):
                    return None
                if create:
                    raise UnsafePath(f"{shown}: {name} is not a directory", path=shown) from None
                raise FileNotFoundError(errno.ENOTDIR, "not a directory", name) from None
        if created:
            os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
        return fd

    # -- reading ----------------------------------------------------------------

    @contextlib.contextmanager
    def open_regular(
        self, path: InTree, *, links: Links = Links.IN_ROOT, writable: bool = False
    ) -> Iterator[Optional[int]]:
        """A descriptor of the regular file at `path` (None when absent), open for
        reading (and writing when `writable`), never through a link.

        UnsafePath when it is anything but a regular file: its type is looked at
        before it is opened, so a device node is never opened at all.
        """
        shown = self.shown(path)
        try:
            dir_fd, name, _ = self._walk(path, links=links, last="entry")
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                found = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                yield None
                return
            if not stat.S_ISREG(found.st_mode):
                raise UnsafePath(
                    f"{shown} is {kind_of(found.st_mode)}, not a regular file", path=shown
                )
            flags = (os.O_RDWR if writable else os.O_RDONLY) | _FILE_FLAGS
            try:
                fd = os.open(name, flags, dir_fd=dir_fd)
            except FileNotFoundError:
                yield None
                return
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # replaced by a link since we looked
                    raise UnsafePath(f"{shown} changed into a symbolic link", path=shown) from None
                raise _unreadable(shown, exc) from None
            try:
                opened = os.fstat(fd)
                if not stat.S_ISREG(opened.st_mode) or opened.st_ino != found.st_ino:
                    raise UnsafePath(f"{shown} changed while azprov opened it", path=shown)
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def read(self, path: InTree, cap: int, *, links: Links = Links.IN_ROOT) -> Optional[bytes]:
        """The whole content of the regular file `path`, or None when it is absent.

        FileTooLarge when it holds more than `cap` bytes (never a cut copy);
        UnsafePath when it is a link that `links` refuses or not a regular file.
        """
        shown = self.shown(path)
        with self.open_regular(path, links=links) as fd:
            if fd is None:
                return None
            size = os.fstat(fd).st_size
            if size > cap:
                raise _too_large(shown, size, cap)
            chunks: list[bytes] = []
            total = 0
            try:
                while True:
                    chunk = os.read(fd, min(cap + 1 - total, 1 << 20) or 1)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > cap:  # it grew while we read
                        raise _too_large(shown, total, cap)
            except OSError as exc:
                raise _unreadable(shown, exc) from None
            return b"".join(chunks)

    def read_text(self, path: InTree, cap: int, *, links: Links = Links.IN_ROOT) -> Optional[str]:
        """`read`, decoded as UTF-8 (an undecodable byte becomes U+FFFD)."""
        data = self.read(path, cap, links=links)
        return None if data is None else data.decode("utf-8", "replace")

    def lstat(self, path: InTree, *, links: Links = Links.IN_ROOT) -> Optional[os.stat_result]:
        """The status of `path` itself (a final link is not followed); None when absent."""
        return self._stat(path, links, follow_last=False)

    def stat(self, path: InTree, *, links: Links = Links.IN_ROOT) -> Optional[os.stat_result]:
        """The status of what `path` leads to inside the tree; None when absent."""
        return self._stat(path, links, follow_last=True)

    def _stat(self, path: InTree, links: Links, follow_last: bool) -> Optional[os.stat_result]:
        try:
            dir_fd, name, _ = self._walk(path, links=links, last="entry", follow_last=follow_last)
        except FileNotFoundError:
            return None
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _unreadable(self.shown(path), exc) from None
        finally:
            os.close(dir_fd)

    def resolve(self, path: InTree) -> Optional[str]:
        """Where `path` leads inside the tree (`/usr/bin/python3.11` for
        `/usr/bin/python3`), whether or not that exists; None when a directory
        on the way is missing."""
        try:
            dir_fd, name, names = self._walk(path, links=Links.IN_ROOT, last="entry")
        except FileNotFoundError:
            return None
        os.close(dir_fd)
        return "/" + "/".join([*names, name] if name != "." else names)

    def readlink(self, path: InTree, *, links: Links = Links.IN_ROOT) -> Optional[str]:
        """What the link at `path` says (unresolved), or None when it is not a link."""
        try:
            dir_fd, name, _ = self._walk(path, links=links, last="entry", follow_last=False)
        except FileNotFoundError:
            return None
        try:
            return os.readlink(name, dir_fd=dir_fd)
        except OSError:
            return None
        finally:
            os.close(dir_fd)

    def listdir(
        self, path: InTree, *, links: Links = Links.IN_ROOT, limit: int = MAX_ENTRIES
    ) -> list[str]:
        """The names in directory `path`, sorted; [] when it is absent or not a directory."""
        try:
            fd, _, _ = self._walk(path, links=links, last="dir")
        except FileNotFoundError:
            return []
        try:
            names: list[str] = []
            with os.scandir(fd) as entries:
                for entry in entries:
                    names.append(entry.name)
                    if len(names) > limit:
                        shown = self.shown(path)
                        raise FileTooLarge(
                            f"{shown} holds more than {limit} entries", path=shown, limit=limit
                        )
            return sorted(names)
        finally:
            os.close(fd)

    def glob(self, pattern: str, *, links: Links = Links.IN_ROOT) -> list[str]:
        """Paths in the tree (`etc/ssh/sshd_config.d/x.conf`, no leading `/`) that
        match a shell pattern (`*`, `?`, `[…]` per component), sorted. As in the
        shell, a wildcard matches a leading dot only when the pattern has one."""
        found = [""]
        for part in [p for p in pattern.strip("/").split("/") if p]:
            matches: list[str] = []
            for prefix in found:
                if _GLOB_CHARS.isdisjoint(part):
                    candidate = f"{prefix}/{part}" if prefix else part
                    if self.lstat(candidate, links=links) is not None:
                        matches.append(candidate)
                    continue
                hidden = part.startswith(".")
                for name in self.listdir(prefix, links=links):
                    if fnmatch.fnmatchcase(name, part) and (hidden or not name.startswith(".")):
                        matches.append(f"{prefix}/{name}" if prefix else name)
            found = matches
        return sorted(found)

    # -- writing ----------------------------------------------------------------

    @contextlib.contextmanager
    def directory(
        self,
        path: InTree,
        *,
        create: bool = True,
        mode: int = 0o755,
        owner: Owner = None,
        trusted: Optional[InTree] = None,
        links: Links = Links.IN_ROOT,
    ) -> Iterator[int]:
        """A descriptor of directory `path` inside the tree, creating what is
        missing (with `mode`, and `owner` when given). Below `trusted` no link
        is followed (see `_walk`). FileNotFoundError when absent and not `create`."""
        fd, _, _ = self._walk(
            path, links=links, last="dir", create=create, mode=mode, owner=owner, trusted=trusted
        )
        try:
            yield fd
        finally:
            os.close(fd)

    def write(
        self,
        path: InTree,
        data: bytes,
        *,
        mode: int = 0o644,
        owner: Owner = None,
        dir_mode: int = 0o755,
        trusted: Optional[InTree] = None,
        links: Links = Links.IN_ROOT,
    ) -> None:
        """Atomically replace the file `path` (temp file, fsync, rename): a link at
        `path` itself is replaced, never followed."""
        from azprov.host.files import write_at

        parts = self.parts(path)
        if not parts:
            raise UnsafePath(f"{self.shown(path)} names the top of the tree, not a file")
        with self.directory(
            "/".join(parts[:-1]), mode=dir_mode, owner=owner, trusted=trusted, links=links
        ) as dir_fd:
            write_at(dir_fd, parts[-1], data, mode=mode, owner=owner)

    def remove(self, path: InTree, *, links: Links = Links.IN_ROOT) -> bool:
        """Remove the file (or link) at `path` itself; False when it was absent."""
        try:
            dir_fd, name, _ = self._walk(path, links=links, last="entry", follow_last=False)
        except FileNotFoundError:
            return False
        try:
            os.unlink(name, dir_fd=dir_fd)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise HostError(
                f"cannot remove {self.shown(path)}: {exc.strerror or exc}", path=self.shown(path)
            ) from None
        finally:
            os.close(dir_fd)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _pop_all_but_last(stack: list[int]) -> int:
    while len(stack) > 1:
        os.close(stack.pop(0))
    return stack.pop()


def _too_large(shown: str, size: int, cap: int) -> FileTooLarge:
    return FileTooLarge(
        f"{shown} is {size} bytes, more than the {cap} azprov reads for it", path=shown, size=size
    )


def _unreadable(shown: str, exc: OSError) -> HostError:
    return HostError(f"cannot read {shown}: {exc.strerror or exc}", path=shown)
