"""Deprovision's changes as listed actions, and the file operations they use.

Against `--root DIR` only that tree is touched: a path whose directory resolves
outside it (an absolute symlink in the image, say) is left alone with a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Callable

from azprov.errors import AzprovError, HostError
from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)


class DeprovisionRefused(AzprovError):
    """Deprovisioning cannot go ahead safely; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Action:
    """One change, described as the listing shows it."""

    description: str
    apply: Callable[[], None]


def removals(root: TargetRoot, what: str, paths: list[Path]) -> list[Action]:
    actions = []
    for path in paths:
        if not root.contains(path):
            log.warning("leaving %s alone: it resolves outside %s", path, root.path)
            continue
        actions.append(Action(f"remove {what} {root.outside_view(path)}", _remover(root, path)))
    return actions


def _remover(root: TargetRoot, path: Path) -> Callable[[], None]:
    return lambda: remove(root, path)


def remove(root: TargetRoot, path: Path) -> None:
    """Delete a file, a link (never its target) or a directory tree; gone already is fine."""
    shown = root.outside_view(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HostError(f"cannot remove {shown}: {exc.strerror}", path=shown) from None


def write_file(root: TargetRoot, path: str, data: bytes, mode: int) -> None:
    target = root / path  # refuses a path that leads out of the root
    try:
        write_atomic(target, data, mode=mode, owner=(0, 0))
    except OSError as exc:
        raise HostError(f"cannot write {path}: {exc.strerror}", path=path) from None
