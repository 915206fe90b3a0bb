"""Installing the admin user's SSH public keys into authorized_keys.

The home directory belongs to the user, who may have planted symlinks
(`.ssh -> /etc`): every component below the home's parent is opened without
following links, and the file is replaced atomically, 0600, owned by the user.
Existing lines are kept; a key already present is not added twice.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections import defaultdict
from typing import Iterable

from azprov.credentials import AuthorizedKey, key_path_inside_home
from azprov.host.files import open_directory, read_at, write_at
from azprov.host.root import TargetRoot
from azprov.host.users import Account

log = logging.getLogger(__name__)


def install_keys(root: TargetRoot, account: Account, keys: Iterable[AuthorizedKey]) -> list[str]:
    """Write the keys (grouped by their authorized_keys path); returns the paths written."""
    by_path: dict[str, list[str]] = defaultdict(list)
    for index, key in enumerate(keys):
        path = key_path_inside_home(key.path, account.home, f"publicKeys[{index}].path")
        by_path[path].append(key.line)
    written = []
    for path, lines in by_path.items():
        _merge_into(root, account, path, lines)
        written.append(path)
    return written


def _merge_into(root: TargetRoot, account: Account, path: str, lines: list[str]) -> None:
    home_parent = root / posixpath.dirname(account.home.rstrip("/"))
    target = root / path
    owner = (account.uid, account.gid)
    # Walk from the home's (root-owned) parent, never following a link below it.
    with open_directory(target.parent, trusted=home_parent, mode=0o700, owner=owner) as dir_fd:
        # Always home/.ssh (key_path_inside_home allows nothing else): an existing
        # one may be too open for sshd's StrictModes.
        os.fchmod(dir_fd, 0o700)
        os.fchown(dir_fd, *owner)
        existing = read_at(dir_fd, target.name)
        current = existing.decode("utf-8", "replace").splitlines() if existing else []
        merged = [line for line in current if line.strip()]
        added = 0
        for line in lines:
            if line not in merged:
                merged.append(line)
                added += 1
        write_at(dir_fd, target.name, ("\n".join(merged) + "\n").encode(), mode=0o600, owner=owner)
    log.info("%s: %d key(s) added, %d already there", path, added, len(lines) - added)
