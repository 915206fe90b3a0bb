"""Reading an image tree the way its own programs would see it, without leaving it.

Links are resolved as if the tree were `/` (an absolute link `/etc/x -> /run/x`
stays inside the tree, `..` stops at its top), through the target root's one
reader (`azprov.host.confined`), so a mounted image never makes a check read
the host's files. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any, Callable, Iterator, Optional, TypeVar

from azprov.errors import HostError
from azprov.host.confined import MAX_ENTRIES
from azprov.host.root import TargetRoot

T = TypeVar("T")
# What a check reads of one file when it says nothing else: the largest text
# file a check reads (a dpkg status, a udev rules set) stays well below this.
READ_CAP = 16 << 20


class Tree:
    """A read-only view of a target root; paths are relative to it (`etc/fstab`)."""

    def __init__(self, root: TargetRoot) -> None:
        self.root = root
        self.base = str(root.path)
        self.live = root.live
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a value once per run (unit enablement, the kernel command line…)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def real(self, relative: str) -> Optional[str]:
        """Where `relative` leads inside the tree, as a tree path without the
        leading `/` (`usr/bin/python3.11`); None when a directory on the way is
        missing or the links loop."""
        try:
            found = self.root.resolve(relative)
        except HostError:
            return None
        return None if found is None else found.lstrip("/")

    def link_target(self, relative: str) -> Optional[str]:
        """What a symlink says (unresolved), or None when `relative` is not a link."""
        try:
            return self.root.readlink(relative)
        except HostError:
            return None

    def lstat(self, relative: str) -> Optional[os.stat_result]:
        try:
            return self.root.lstat(relative)
        except HostError:
            return None

    def stat(self, relative: str) -> Optional[os.stat_result]:
        try:
            return self.root.stat(relative)
        except HostError:
            return None

    def exists(self, relative: str) -> bool:
        return self.stat(relative) is not None

    def is_file(self, relative: str) -> bool:
        found = self.stat(relative)
        return found is not None and stat.S_ISREG(found.st_mode)

    def is_dir(self, relative: str) -> bool:
        found = self.stat(relative)
        return found is not None and stat.S_ISDIR(found.st_mode)

    def size(self, relative: str) -> int:
        found = self.stat(relative)
        return found.st_size if found is not None and stat.S_ISREG(found.st_mode) else 0

    def unreadable(self, relative: str, cap: int = READ_CAP) -> Optional[str]:
        """Why a file that is there cannot be read as one; None when absent or readable.

        `read_bytes` and `lines` give None / [] both for an absent file and for a link
        loop, a FIFO, a file over its cap or one that cannot be opened: a check for
        which absent means something asks this first and says `unknown:` rather than
        guess.
        """
        try:
            with self.root.open_regular(relative) as fd:
                if fd is not None and os.fstat(fd).st_size > cap:
                    return f"larger than {cap} bytes"
        except HostError as exc:
            return _why(str(exc))
        return None

    def read_bytes(self, relative: str, limit: int = READ_CAP) -> Optional[bytes]:
        """A regular file's whole content; None when absent, unreadable or over `limit`
        bytes (never a cut copy). See `unreadable` to tell these apart."""
        try:
            return self.root.read(relative, limit)
        except HostError:
            return None

    def head(self, relative: str, count: int) -> Optional[bytes]:
        """The first `count` bytes of a regular file (a magic number); None when
        absent or unreadable."""
        try:
            with self.root.open_regular(relative) as fd:
                return None if fd is None else os.read(fd, count)
        except (HostError, OSError):
            return None

    @contextlib.contextmanager
    def open_regular(self, relative: str) -> Iterator[Optional[int]]:
        """A descriptor of a regular file in the tree, to stream it (to a tool's stdin);
        None when absent or unreadable."""
        try:
            with self.root.open_regular(relative) as fd:
                yield fd
                return
        except HostError:
            pass
        yield None

    def read_text(self, relative: str, limit: int = READ_CAP) -> Optional[str]:
        data = self.read_bytes(relative, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def lines(self, relative: str) -> list[str]:
        text = self.read_text(relative)
        return text.splitlines() if text else []

    def listdir(self, relative: str) -> list[str]:
        try:
            return self.root.listdir(relative)
        except HostError:
            return []

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a shell pattern (`*`, `?`, `[…]` per component), sorted."""
        try:
            return self.root.glob(pattern)
        except HostError:
            return []

    def host_path(self, relative: str) -> str:
        """Where `relative` leads, on the host: only to name it in a message or to
        a tool that is itself confined; never to open it."""
        return os.path.join(self.base, self.real(relative) or "")

    def walk(
        self, relative: str, skip: frozenset[str] = frozenset(), limit: int = MAX_ENTRIES
    ) -> Iterator[str]:
        """Every regular file below a directory (tree paths), depth first, never
        through a link; directories named in `skip` are not entered, and at most
        `limit` entries are looked at in all."""
        pending = [relative.strip("/")]
        seen = 0
        while pending and seen < limit:
            directory = pending.pop()
            for name in self.listdir(directory):
                seen += 1
                if seen > limit:
                    return
                path = f"{directory}/{name}" if directory else name
                found = self.lstat(path)
                if found is None:
                    continue
                if stat.S_ISDIR(found.st_mode) and name not in skip:
                    pending.append(path)
                elif stat.S_ISREG(found.st_mode):
                    yield path


def _why(message: str) -> str:
    """`a FIFO` from `/x is a FIFO, not a regular file`: the part a finding shows."""
    for marker in (" is a symbolic link loop", " is a symbolic link"):
        if marker in message:
            return "a link loop" if "loop" in marker else "a symbolic link"
    if ", not a regular file" in message:
        return message.split(" is ", 1)[-1].split(", not a regular file")[0]
    if "cannot read" in message:
        return "unreadable (" + message.rsplit(": ", 1)[-1] + ")"
    return message
