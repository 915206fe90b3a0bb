"""Deprovision's changes as listed actions, and the file operations they use.

Against `--root DIR` only that tree is touched: every path goes through the
root's door, so a link in the image (an absolute one included) is resolved
inside the image, as it will be when the image boots, and a link that is
removed goes itself, never its target.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import stat
from typing import Callable

from azprov.errors import AzprovError, HostError
from azprov.host.files import remove_tree_at
from azprov.host.root import TargetRoot
from azprov.printable import quoted

log = logging.getLogger(__name__)


class DeprovisionRefused(AzprovError):
    """Deprovisioning cannot go ahead safely; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Action:
    """One change, described as the listing shows it."""

    description: str
    apply: Callable[[], None]


def removals(root: TargetRoot, what: str, paths: list[str]) -> list[Action]:
    """An action removing each of `paths` (in the tree, as `root.glob` gives them). The
    name is the image's, quoted: a newline or escape in it cannot forge the listing."""
    return [
        Action(f"remove {what} {quoted(root.shown(path))}", _remover(root, path)) for path in paths
    ]


def _remover(root: TargetRoot, path: str) -> Callable[[], None]:
    return lambda: remove(root, path)


def exists(root: TargetRoot, path: str) -> bool:
    """True when something (a link included) is at `path`; False when it is absent
    or cannot be looked at (then there is nothing deprovision can remove there)."""
    try:
        return root.lstat(path) is not None
    except HostError as exc:
        log.warning("leaving %s alone: %s", quoted(root.shown(path)), exc)
        return False


def remove(root: TargetRoot, path: str) -> None:
    """Delete a file, a link (never its target) or a directory tree; gone already is fine."""
    shown = root.shown(path)
    found = root.lstat(path)
    if found is None:
        return
    if not stat.S_ISDIR(found.st_mode):
        root.remove(path)
        return
    parent, name = posixpath.split(shown)
    try:
        with root.directory(parent, create=False) as dir_fd:
            remove_tree_at(dir_fd, name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HostError(f"cannot remove {shown}: {exc.strerror or exc}", path=shown) from None


def write_file(root: TargetRoot, path: str, data: bytes, mode: int) -> None:
    try:
        root.write(path, data, mode=mode, owner=(0, 0))
    except OSError as exc:
        raise HostError(f"cannot write {path}: {exc.strerror}", path=path) from None
