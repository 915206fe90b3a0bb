"""The admin user: account, password (hash only, never the clear text on argv), sudoers."""

from __future__ import annotations

import logging
import stat
import tempfile
from typing import Callable, NamedTuple, Optional

from azprov.credentials import Secret
from azprov.errors import HostError, UnsafePath
from azprov.host import shadowconf, toolpaths
from azprov.host.confined import Links, kind_of
from azprov.host.root import TargetRoot
from azprov.host.toolpaths import ACCOUNT_FILE_CAP

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


# useradd copies these whole when it adds a user, following a link in their place:
# one is checked before anything runs, so the image never receives what it points to.
SHADOW_FILES = ("/etc/shadow", "/etc/gshadow")


def _refuse_unless_regular(root: TargetRoot, path: str) -> None:
    found = root.lstat(path, links=Links.REFUSE)
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise UnsafePath(f"{path} is {kind_of(found.st_mode)}, not a regular file", path=path)


def _lines(root: TargetRoot, path: str) -> list[str]:
    """The lines of an account file of the root ([] when it is absent).

    The shadow tools always replace these files by rename, so on a real system they
    are never links. They carry the image's identities and password hashes: a link
    (to the host's files, or to another file of the image) is refused, never read.
    """
    text = root.read_text(path, ACCOUNT_FILE_CAP, links=Links.REFUSE)
    return text.splitlines() if text is not None else []


def read_accounts(root: TargetRoot) -> Accounts:
    """The root's accounts; UnsafePath when an account file is a link (or not a file)."""
    for shadow in SHADOW_FILES:
        _refuse_unless_regular(root, shadow)
    users: dict[str, Account] = {}
    lines = _lines(root, "/etc/passwd")
    for line in lines:
        fields = line.split(":")
        if len(fields) < 7:
            continue
        uid, gid = _number(fields[2]), _number(fields[3])
        if uid is not None and gid is not None:
            users[fields[0]] = Account(fields[0], uid, gid, fields[5], fields[6])
    groups = frozenset(line.split(":", 1)[0] for line in _lines(root, "/etc/group") if line)
    # Read as the running image reads it (a link resolves inside the root): useradd's own
    # reading is checked before it runs (toolpaths).
    defs = shadowconf.login_defs(
        shadowconf.read_settings(root, shadowconf.LOGIN_DEFS, links=Links.IN_ROOT)
    )
    return Accounts(
        users, _login_def(defs, "UID_MIN", 1000), _login_def(defs, "UID_MAX", 60000), groups
    )


def _login_def(settings: dict[str, str], key: str, default: int) -> int:
    """A UID bound of login.defs; one that is no number keeps the default."""
    number = _number(settings.get(key, ""))
    return default if number is None else number


def _number(text: str) -> Optional[int]:
    """A UID or GID as the shadow tools take one: ASCII digits, at most 10 of them (int()
    refuses thousands of digits, and '²', which str.isdigit() accepts)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def ensure_user(
    root: TargetRoot, name: str, groups: str, before_useradd: Callable[[], None] = lambda: None
) -> tuple[Account, bool]:
    """Create `name` with a home directory unless it exists; returns (account, created).

    `before_useradd` runs just before the account is made (provision records there,
    durably, that azprov is making it: a kill right after useradd must not lose that).
    """
    existing = read_accounts(root).users.get(name)
    if existing is not None:
        log.info("user %s exists (UID %d); keeping it", name, existing.uid)
        return existing, False
    argv = ["useradd", *root.prefix_args(), "--create-home", "--shell", "/bin/bash"]
    argv += toolpaths.useradd_args(root, name)  # an offline root: its paths checked first
    if groups:
        argv += ["--groups", groups]
    before_useradd()
    root.run([*argv, name], what=f"create user {name}")
    account = read_accounts(root).users.get(name)
    if account is None:
        raise HostError(f"useradd reported success but {name} is not in /etc/passwd", user=name)
    log.info("created user %s (UID %d, home %s)", name, account.uid, account.home)
    return account, True


def check_user_tools(root: TargetRoot, name: str) -> None:
    """Refuse an offline root in which useradd (for a new `name`) or usermod would be led
    out of the root or hang (toolpaths): provision asks before it changes anything."""
    if root.live:
        return
    if name in read_accounts(root).users:
        toolpaths.check_usermod(root)
    else:
        toolpaths.useradd_args(root, name)


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
    toolpaths.check_usermod(root)
    root.run(["usermod", *root.prefix_args(), "--lock", name], what=f"lock the password of {name}")


def _shadow_password(root: TargetRoot, name: str) -> str:
    """The password field of `name` in /etc/shadow ("" when there is no entry)."""
    for line in _lines(root, "/etc/shadow"):
        fields = line.split(":")
        if fields[0] == name and len(fields) > 1:
            return fields[1]
    return ""


def _replace_shadow_field(root: TargetRoot, name: str, hashed: str) -> None:
    """Offline roots: chpasswd has no --prefix, so rewrite the one shadow line ourselves,
    keeping the file's mode and owner (0640 root:shadow on Debian, 0000 on Fedora)."""
    shadow = "/etc/shadow"
    data = root.read(shadow, ACCOUNT_FILE_CAP, links=Links.REFUSE)
    info = root.lstat(shadow, links=Links.REFUSE)
    if data is None or info is None:
        raise HostError(f"the target root has no {shadow}: cannot set a password", path=shadow)
    if not stat.S_ISREG(info.st_mode):  # replaced by a link since it was read
        raise UnsafePath(f"{shadow} changed while azprov read it", path=shadow)
    lines = data.decode("utf-8", "replace").splitlines(keepends=True)
    for index, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields[0] == name and len(fields) >= 2:
            fields[1] = hashed
            lines[index] = ":".join(fields) + "\n"
            break
    else:
        raise HostError(f"{name} has no entry in /etc/shadow", user=name)
    mode, owner = stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)
    if mode & 0o007:
        mode, owner = _private_shadow_mode(root)
        log.warning(
            "%s was mode %04o, which lets every user read it; writing it %04o (uid %d, gid %d)"
            " now that it holds a password hash",
            shadow,
            stat.S_IMODE(info.st_mode),
            mode,
            *owner,
        )
    # The owner goes to the file only: /etc exists, so no directory is made with it.
    root.write(shadow, "".join(lines).encode(), mode=mode, owner=owner, links=Links.REFUSE)


def _private_shadow_mode(root: TargetRoot) -> tuple[int, tuple[int, int]]:
    """The mode and owner of a shadow file no user may read: 0640 root:shadow where the
    image has a shadow group (Debian, Ubuntu), else 0600 root:root."""
    for line in _lines(root, "/etc/group"):
        fields = line.split(":")
        gid = _number(fields[2]) if len(fields) > 2 and fields[0] == "shadow" else None
        if gid is not None:
            return 0o640, (0, gid)
    return 0o600, (0, 0)


SUDOERS_DIR = "/etc/sudoers.d"


def sudoers_path(name: str) -> str:
    # sudo skips drop-ins whose names contain '.', so keep the name plain.
    return f"{SUDOERS_DIR}/90-azprov-{name}"


def write_sudoers(root: TargetRoot, name: str, nopasswd: bool) -> Optional[str]:
    """A drop-in giving `name` sudo (without a password when none was provisioned)."""
    # A drop-in grants root: written only into the image's own /etc/sudoers.d, never
    # through a link (sudo-installed images have a plain directory there).
    directory = root.lstat(SUDOERS_DIR, links=Links.REFUSE)
    if directory is None:
        log.info("no /etc/sudoers.d in the target: sudo is not installed, no drop-in written")
        return None
    if not stat.S_ISDIR(directory.st_mode):
        raise UnsafePath(
            f"{SUDOERS_DIR} is {kind_of(directory.st_mode)}, not a directory", path=SUDOERS_DIR
        )
    rule = "NOPASSWD: ALL" if nopasswd else "ALL"
    content = f"# Written by azprov for the provisioned admin user.\n{name} ALL=(ALL) {rule}\n"
    if root.has_tool("visudo"):
        with tempfile.NamedTemporaryFile("w", prefix="azprov-sudoers-") as check:
            check.write(content)
            check.flush()
            root.run(["visudo", "-c", "-q", "-f", check.name], what="check the sudoers drop-in")
    path = sudoers_path(name)
    root.write(path, content.encode(), mode=0o440, owner=(0, 0), links=Links.REFUSE)
    log.info("wrote %s (%s)", path, rule)
    return path
