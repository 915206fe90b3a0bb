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
import stat
from collections import defaultdict
from typing import Iterable, Optional

from azprov.confined import write_at
from azprov.credentials import AuthorizedKey, key_path_inside_home
from azprov.errors import FileTooLarge, UnsafePath
from azprov.host.files import read_fd
from azprov.host.root import TargetRoot
from azprov.host.users import Account

log = logging.getLogger(__name__)

# One provisioning adds at most 4 MiB of key lines: keys come from IMDS (a reply
# capped at 4 MiB, fabric.http.DEFAULT_MAX_BYTES) or else from ovf-env.xml (capped
# at 1 MiB, host.media.MAX_OVF_BYTES), and each line is shorter than its JSON or
# XML form. 16 MiB holds the image's own lines and four full-size provisionings:
# a larger file is refused whole (never cut, never rewritten), and azprov never
# writes one it would refuse to read back at the next redeploy.
AUTHORIZED_KEYS_CAP = 16 << 20


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
    home_parent = posixpath.dirname(account.home.rstrip("/"))
    ssh_dir, name = posixpath.split(path)
    owner = (account.uid, account.gid)
    # Walk from the home's (root-owned) parent, never following a link below it.
    with root.directory(ssh_dir, mode=0o700, owner=owner, trusted=home_parent) as dir_fd:
        # Always home/.ssh (key_path_inside_home allows nothing else): an existing
        # one may be too open for sshd's StrictModes.
        os.fchmod(dir_fd, 0o700)
        os.fchown(dir_fd, *owner)
        existing = _existing(root, dir_fd, path)
        current = existing.decode("utf-8", "replace").splitlines() if existing else []
        merged = [line for line in current if line.strip()]
        added = 0
        for line in lines:
            if line not in merged:
                merged.append(line)
                added += 1
        data = ("\n".join(merged) + "\n").encode()
        if len(data) > AUTHORIZED_KEYS_CAP:
            raise FileTooLarge(
                f"{path} would be {len(data)} bytes with the new keys, more than the "
                f"{AUTHORIZED_KEYS_CAP} azprov reads back: not written",
                path=path,
                size=len(data),
            )
        write_at(dir_fd, name, data, mode=0o600, owner=owner)
    log.info("%s: %d key(s) added, %d already there", path, added, len(lines) - added)


def _existing(root: TargetRoot, dir_fd: int, path: str) -> Optional[bytes]:
    """The current authorized_keys in the .ssh directory `dir_fd` (None when absent).

    A link there is treated as absent: it is replaced by the new file, never
    followed. The file is opened through the root's door and checked to be the
    very entry of `dir_fd`, which was walked without following the user's links.
    """
    name = posixpath.basename(path)
    try:
        entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(entry.st_mode):
        log.warning("%s is a symbolic link: replacing it with a file, not following it", path)
        return None
    with root.open_regular(path) as fd:
        if fd is None or not os.path.samestat(os.fstat(fd), entry):
            raise UnsafePath(f"{path} changed while azprov read it", path=path)
        return read_fd(fd, AUTHORIZED_KEYS_CAP, path)
