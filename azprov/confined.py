"""The one door into a directory tree azprov does not trust: every read, listing
and write below a target root (or a mounted CD, a handler's folder) goes
through here.

Paths are resolved by `azprov.treewalk` one component at a time from
descriptors, so nothing outside the tree is ever opened, whatever the tree
holds and however it changes while we walk it. A file is read only when it is
a regular file (a FIFO or device planted in its place neither hangs nor feeds
us), and never past the cap its caller chose: a larger file is refused whole
with `FileTooLarge`, never cut.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import stat
from typing import Iterator, Optional

from azprov.errors import FileTooLarge, HostError, UnsafePath
from azprov.treewalk import InTree, Links, Owner, Rooted, kind_of, unreadable, write_at

__all__ = ["MAX_ENTRIES", "Confined", "InTree", "Links", "kind_of", "write_at"]

# Directory listings larger than this are refused: no directory azprov reads
# (sshd_config.d, /home, a handler's status folder, /usr/lib/modules/…) comes
# near it, and a crafted one with millions of entries must not eat the memory.
MAX_ENTRIES = 100_000
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_GLOB_CHARS = frozenset("*?[")


class Confined(Rooted):
    """A directory tree that no path may leave: the target root, a mounted CD,
    an extension's handler folder."""

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
                raise unreadable(shown, exc) from None
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
                raise unreadable(shown, exc) from None
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
            raise unreadable(self.shown(path), exc) from None
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
        parts = self.parts(path)
        if not parts:
            raise UnsafePath(f"{self.shown(path)} names the top of the tree, not a file")
        with self.directory(
            "/".join(parts[:-1]), mode=dir_mode, owner=owner, trusted=trusted, links=links
        ) as dir_fd:
            try:
                write_at(dir_fd, parts[-1], data, mode=mode, owner=owner)
            except OSError as exc:
                # A directory in the file's place, a full or read-only disk: one line
                # naming the file, as every other refusal of this door.
                shown = self.shown(path)
                raise HostError(
                    f"cannot write {shown}: {exc.strerror or exc}", path=shown
                ) from None

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


def _too_large(shown: str, size: int, cap: int) -> FileTooLarge:
    return FileTooLarge(
        f"{shown} is {size} bytes, more than the {cap} azprov reads for it", path=shown, size=size
    )
