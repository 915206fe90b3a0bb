"""Credentials as values: a secret that never prints, and an authorized SSH key.

They sit below both the fabric (which reads them from IMDS and the media) and
the host (which installs them), so neither has to import the other.
"""

from __future__ import annotations

import logging
import posixpath
from typing import NamedTuple, Optional

log = logging.getLogger(__name__)


class Secret:
    """A value that must never be printed: its repr and str are redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class AuthorizedKey(NamedTuple):
    line: str  # one validated authorized_keys line
    path: Optional[str]  # where the platform asked for it (checked against the home later)


def key_path_inside_home(requested: Optional[str], home: str, field: str) -> str:
    """The authorized_keys file to write: the requested one only when it is a file
    directly in `home/.ssh/` named authorized_keys*, else the default one."""
    ssh_dir = posixpath.join(home, ".ssh")
    default = posixpath.join(ssh_dir, "authorized_keys")
    if not requested:
        return default
    normalized = posixpath.normpath(requested)
    if posixpath.dirname(normalized) != ssh_dir or not posixpath.basename(normalized).startswith(
        "authorized_keys"
    ):
        log.warning(
            "%s=%r is not an authorized_keys file in %s; using %s instead",
            field,
            requested,
            ssh_dir,
            default,
        )
        return default
    return normalized
