"""The admin user: account, password (hash only, never the clear text on argv), sudoers."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import NamedTuple, Optional

from azprov.credentials import Secret
from azprov.errors import HostError
from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)


class Account(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str
    shell: str


class Accounts(NamedTuple):
    """The accounts in the root's /etc/passwd and where system accounts end (UID_MIN)."""

    users: dict[str, Account]
    uid_min: int
    uid_max: int = 60000
    groups: frozenset[str] = frozenset()


def _lines(root: TargetRoot, path: str) -> list[str]:
    try:
        return (root / path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def read_accounts(root: TargetRoot) -> Accounts:
    users: dict[str, Account] = {}
    lines = _lines(root, "/etc/passwd")
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 7 and fields[2].isdigit() and fields[3].isdigit():
            users[fields[0]] = Account(
                fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6]
            )
    groups = frozenset(line.split(":", 1)[0] for line in _lines(root, "/etc/group") if line)
    defs = "\n".join(_lines(root, "/etc/login.defs"))
    return Accounts(
        users, _login_def(defs, "UID_MIN", 1000), _login_def(defs, "UID_MAX", 60000), groups
    )


def _login_def(text: str, key: str, default: int) -> int:
    match = re.search(rf"^\s*{key}\s+(\d+)\s*$", text, re.MULTILINE)
    return int(match.group(1)) if match else default


def ensure_user(root: TargetRoot, name: str, groups: str) -> tuple[Account, bool]:
    """Create `name` with a home directory unless it exists; returns (account, created)."""
    existing = read_accounts(root).users.get(name)
    if existing is not None:
        log.info("user %s exists (UID %d); keeping it", name, existing.uid)
        return existing, False
    argv = ["useradd", *root.prefix_args(), "--create-home", "--shell", "/bin/bash"]
    if not root.live and (root / "/etc/skel").is_dir():
        argv += ["--skel", str(root / "/etc/skel")]  # the image's skeleton, not the host's
    if groups:
        argv += ["--groups", groups]
    root.run([*argv, name], what=f"create user {name}")
    account = read_accounts(root).users.get(name)
    if account is None:
        raise HostError(f"useradd reported success but {name} is not in /etc/passwd", user=name)
    log.info("created user %s (UID %d, home %s)", name, account.uid, account.home)
    return account, True


def hash_password(root: TargetRoot, password: Secret) -> str:
    """SHA-512 crypt hash; the clear text goes to openssl on stdin only."""
    result = root.run(
        ["openssl", "passwd", "-6", "-stdin"],
        what="hash the password",
        stdin=password.reveal().encode() + b"\n",
    )
    hashed = result.stdout.decode().strip()
    if not hashed.startswith("$6$"):
        raise HostError("openssl passwd -6 returned no SHA-512 hash")
    return hashed


def set_password(root: TargetRoot, name: str, password: Secret) -> None:
    hashed = hash_password(root, password)
    if root.live:
        # chpasswd -e reads "user:hash" on stdin: nothing secret on any command line.
        root.run(
            ["chpasswd", "-e"],
            what=f"set the password of {name}",
            stdin=f"{name}:{hashed}\n".encode(),
        )
    else:
        _replace_shadow_field(root, name, hashed)
    log.info("set the password of %s (SHA-512 hash)", name)


def lock_password(root: TargetRoot, name: str) -> None:
    """No password was provisioned: lock password login for the account.

    `useradd` (without -p) already writes a locked `!` entry, so a user it just
    made needs no `usermod --lock` process; an existing account with a usable
    password gets one.
    """
    if _shadow_password(root, name).startswith(("!", "*")):
        log.debug("the password of %s is already locked", name)
        return
    root.run(["usermod", *root.prefix_args(), "--lock", name], what=f"lock the password of {name}")


def _shadow_password(root: TargetRoot, name: str) -> str:
    """The password field of `name` in /etc/shadow ("" when there is no entry)."""
    for line in _lines(root, "/etc/shadow"):
        fields = line.split(":")
        if fields[0] == name and len(fields) > 1:
            return fields[1]
    return ""


def _replace_shadow_field(root: TargetRoot, name: str, hashed: str) -> None:
    """Offline roots: chpasswd has no --prefix, so rewrite the one shadow line ourselves."""
    shadow = root / "/etc/shadow"
    info = os.stat(shadow)
    lines = shadow.read_text(encoding="utf-8").splitlines(keepends=True)
    for index, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields[0] == name and len(fields) >= 2:
            fields[1] = hashed
            lines[index] = ":".join(fields) + "\n"
            break
    else:
        raise HostError(f"{name} has no entry in /etc/shadow", user=name)
    write_atomic(
        shadow,
        "".join(lines).encode(),
        mode=info.st_mode & 0o7777,
        owner=(info.st_uid, info.st_gid),
    )


def sudoers_path(name: str) -> str:
    # sudo skips drop-ins whose names contain '.', so keep the name plain.
    return f"/etc/sudoers.d/90-azprov-{name}"


def write_sudoers(root: TargetRoot, name: str, nopasswd: bool) -> Optional[str]:
    """A drop-in giving `name` sudo (without a password when none was provisioned)."""
    directory = root / "/etc/sudoers.d"
    if not directory.is_dir():
        log.info("no /etc/sudoers.d in the target: sudo is not installed, no drop-in written")
        return None
    rule = "NOPASSWD: ALL" if nopasswd else "ALL"
    content = f"# Written by azprov for the provisioned admin user.\n{name} ALL=(ALL) {rule}\n"
    if root.has_tool("visudo"):
        with tempfile.NamedTemporaryFile("w", prefix="azprov-sudoers-") as check:
            check.write(content)
            check.flush()
            root.run(["visudo", "-c", "-q", "-f", check.name], what="check the sudoers drop-in")
    path = sudoers_path(name)
    write_atomic(root / path, content.encode(), mode=0o440, owner=(0, 0))
    log.info("wrote %s (%s)", path, rule)
    return path
