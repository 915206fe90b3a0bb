"""Reading an image tree the way its own programs would see it, without leaving it.

Links are resolved as if the tree were `/` (an absolute link `/etc/x -> /run/x`
stays inside the tree, `..` stops at its top), so a mounted image never makes
a check read the host's files. Nothing here writes.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from azprov.host.root import TargetRoot

T = TypeVar("T")
_MAX_LINKS = 40
_GLOB_CHARS = frozenset("*?[")
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


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

    def real(self, relative: str, follow_last: bool = True) -> Optional[str]:
        """The host path of `relative` with every link resolved inside the tree (None: a loop)."""
        parts = [p for p in relative.strip("/").split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = os.path.join(self.base, *done, name)
            if (parts or follow_last) and os.path.islink(candidate):
                hops += 1
                if hops > _MAX_LINKS:
                    return None
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            done.append(name)
        return os.path.join(self.base, *done)

    def link_target(self, relative: str) -> Optional[str]:
        """What a symlink says (unresolved), or None when `relative` is not a link."""
        path = self.real(relative, follow_last=False)
        if path is None or not os.path.islink(path):
            return None
        return os.readlink(path)

    def lstat(self, relative: str) -> Optional[os.stat_result]:
        path = self.real(relative, follow_last=False)
        try:
            return os.lstat(path) if path else None
        except OSError:
            return None

    def stat(self, relative: str) -> Optional[os.stat_result]:
        path = self.real(relative)
        try:
            return os.lstat(path) if path else None
        except OSError:
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

    def unreadable(self, relative: str) -> Optional[str]:
        """Why a file that is there cannot be read as one; None when absent or readable.

        `read_bytes` and `lines` give None / [] both for an absent file and for a link
        loop, a FIFO or a file that cannot be opened: a check for which absent means
        something asks this first and says `unknown:` rather than guess.
        """
        path = self.real(relative)
        if path is None:
            return "a link loop"
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        kind = next((name for test, name in _KINDS if test(mode)), None)
        if kind is not None or not stat.S_ISREG(mode):
            return kind or "not a regular file"
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK))
        except OSError as exc:
            return f"unreadable ({exc.strerror})"
        return None

    def read_bytes(self, relative: str, limit: int = 1 << 24) -> Optional[bytes]:
        """A regular file's content (at most `limit` bytes); None when absent or unreadable.

        See `unreadable` to tell the two apart.
        """
        path = self.real(relative)
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(limit)
        except OSError:
            return None
        finally:
            os.close(fd)

    def read_text(self, relative: str) -> Optional[str]:
        data = self.read_bytes(relative)
        return None if data is None else data.decode("utf-8", "replace")

    def lines(self, relative: str) -> list[str]:
        text = self.read_text(relative)
        return text.splitlines() if text else []

    def listdir(self, relative: str) -> list[str]:
        path = self.real(relative)
        try:
            return sorted(os.listdir(path)) if path else []
        except OSError:
            return []

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a shell pattern (`*`, `?`, `[…]` per component), sorted."""
        found = [""]
        for part in [p for p in pattern.strip("/").split("/") if p]:
            matches: list[str] = []
            for prefix in found:
                if _GLOB_CHARS.isdisjoint(part):
                    candidate = f"{prefix}/{part}" if prefix else part
                    if self.lstat(candidate) is not None:
                        matches.append(candidate)
                    continue
                hidden = part.startswith(".")
                for name in self.listdir(prefix):
                    if fnmatch.fnmatchcase(name, part) and (hidden or not name.startswith(".")):
                        matches.append(f"{prefix}/{name}" if prefix else name)
            found = matches
        return sorted(found)

    def host_path(self, relative: str) -> Path:
        """Where `relative` is on the host, for tools that take a file (never a write)."""
        return Path(self.real(relative) or self.base)
