"""Accounts: locked passwords, leftover build users, and sudo that lets the admin in."""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Iterator, Optional, Union

from azprov.checks.model import Note, check, unknown, unreadable
from azprov.checks.tree import Tree

# uid_t is 32 bits; (uid_t) -1 is "no user".
MAX_UID = (1 << 32) - 2


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    uid: int
    home: str  # relative to the tree
    shell: str

    @property
    def can_log_in(self) -> bool:
        return not self.shell.endswith(("nologin", "false"))


def decimal(text: str, most: int) -> Optional[int]:
    """`text` as the C library reads a number here: ASCII digits only (str.isdigit()
    also takes '²', which int() refuses), at most `most`; None for anything else.
    The length is checked first: int() of a long digit string is quadratic on 3.9."""
    significant = text.lstrip("0")
    if not text.isascii() or not text.isdigit() or len(significant) > len(str(most)):
        return None
    value = int(significant or "0")  # leading zeros count towards 3.11's digit limit too
    return value if value <= most else None


def users(tree: Tree) -> list[User]:
    """The accounts of etc/passwd (a line whose UID is not a number is none)."""

    def read() -> list[User]:
        found = []
        for line in tree.lines("etc/passwd"):
            fields = line.split(":")
            uid = decimal(fields[2], MAX_UID) if len(fields) >= 7 else None
            if uid is not None:
                found.append(User(fields[0], uid, fields[5].strip("/"), fields[6]))
        return found

    return tree.memo("accounts.users", read)


def uid_range(tree: Tree) -> tuple[int, int]:
    """UID_MIN and UID_MAX of etc/login.defs (a value that is no number keeps the default)."""
    values = {"UID_MIN": 1000, "UID_MAX": 60000}
    for line in tree.lines("etc/login.defs"):
        words = line.split()
        number = decimal(words[1], MAX_UID) if len(words) >= 2 and words[0] in values else None
        if number is not None:
            values[words[0]] = number
    return values["UID_MIN"], values["UID_MAX"]


def _live_password(field: str) -> bool:
    """A crypt hash or an empty field; `!`/`*` prefixes (and `x`, LISA's rule) are locked."""
    return field == "" or field.startswith("$") or bool(re.match(r"^[./0-9A-Za-z]{13}$", field))


@check(
    "passwords-locked",
    "error",
    consequence="one known password opens every clone",
    source="LISA verify_no_pre_exist_users; waagent DeleteRootPassword; virt-sysprep passwd-backups",
)
def passwords_locked(tree: Tree) -> Iterator[Note]:
    for path in ("etc/shadow", "etc/shadow-", "etc/gshadow-"):
        cannot = unreadable(tree, path)
        yield from cannot
        for line in [] if cannot else tree.lines(path):
            fields = line.split(":")
            if len(fields) >= 2 and _live_password(fields[1]):
                state = "no password (empty field)" if fields[1] == "" else "a password hash"
                yield Note(
                    path,
                    f"gives {fields[0]} {state}",
                    f"lock it: usermod -L {fields[0]} (and remove etc/*-)",
                )


_BUILD_DROPINS = re.compile(r"^(90-cloud-init-users|waagent|90-azprov-.*)\Z")


@check(
    "leftover-users-sudoers",
    "warn",
    consequence="build accounts become back doors or collide with the deployment's admin name",
    source="waagent deprovision+user; virt-sysprep user-account",
    reads=(
        "etc/passwd",
        "etc/login.defs",
    ),
)
def leftover_users_sudoers(tree: Tree) -> Iterator[Note]:
    low, high = uid_range(tree)
    names = {u.name for u in users(tree)}
    for user in users(tree):
        if low <= user.uid <= high:
            yield Note(
                "etc/passwd",
                f"has user {user.name} (UID {user.uid}, home /{user.home})",
                f"userdel -r {user.name}",
            )
    for path in tree.glob("etc/sudoers.d/*"):
        name = path.rsplit("/", 1)[1]
        if _BUILD_DROPINS.match(name):
            yield Note(path, "is a build admin's sudo rule", f"remove {path}")
            continue
        for line in tree.lines(path):
            words = line.split("#", 1)[0].split()
            if (
                words
                and re.match(r"^[a-z_][a-z0-9_.-]*$", words[0])
                and words[0] not in names
                and words[0] != "root"
            ):
                yield Note(
                    path, f"grants sudo to {words[0]}, who does not exist", "remove the line"
                )


# A real sudo policy is etc/sudoers and a handful of drop-ins; sudo itself stops
# at 128 nested includes. Past this many files named, the policy is not worked out.
MAX_SUDOERS_FILES = 256


def sudoers_files(tree: Tree) -> Union[list[str], str]:
    """etc/sudoers and what it includes (sudo skips drop-in names with '.' or ending
    in '~'), each file and directory once; or why they are not worked out (more
    than MAX_SUDOERS_FILES files named)."""

    def read() -> Union[list[str], str]:
        files: list[str] = []
        named = {"etc/sudoers"}
        directories: set[str] = set()
        pending = collections.deque(["etc/sudoers"])
        while pending:
            path = pending.popleft()
            if not tree.exists(path):
                continue
            files.append(path)
            for target in _included(tree, path, directories):
                if target not in named:
                    named.add(target)
                    pending.append(target)
                if len(named) > MAX_SUDOERS_FILES:
                    return f"etc/sudoers and its includes name more than {MAX_SUDOERS_FILES} files"
        return files

    return tree.memo("accounts.sudoers", read)


def _included(tree: Tree, path: str, directories: set[str]) -> Iterator[str]:
    """The files `path`'s include lines name (a directory already listed, not again)."""
    for line in tree.lines(path):
        match = re.match(r"^\s*[@#](include|includedir)\s+(\S+)", line)
        if not match:
            continue
        target = match.group(2).lstrip("/")
        if match.group(1) == "include":
            yield target if "/" in target else f"etc/{target}"
        elif target not in directories:
            directories.add(target)
            for p in tree.glob(f"{target}/*"):
                if "." not in p.rsplit("/", 1)[1] and not p.endswith("~"):
                    yield p


@check(
    "sudo-policy",
    "error",
    consequence="the admin cannot escalate: sudo asks for a locked password or ignores azprov's rule",
    source="LISA verify_default_targetpw; waagent conf_sudoer",
)
def sudo_policy(tree: Tree) -> Iterator[Note]:
    files = sudoers_files(tree)
    if isinstance(files, str):
        yield unknown("etc/sudoers", files, "check the sudo policy by hand")
        return
    cannot = unreadable(tree, *dict.fromkeys(["etc/sudoers", *files]))
    if cannot:
        yield from cannot
        return
    if not tree.exists("etc/sudoers"):
        yield Note(
            "etc/sudoers", "is missing (sudo not installed)", "install sudo", severity="warn"
        )
        return
    for path in files:
        for number, line in enumerate(tree.lines(path), 1):
            if re.match(r"^\s*Defaults\b.*(?<![!\w])(targetpw|rootpw|runaspw)\b", line):
                yield Note(f"{path}:{number}", f"has '{line.strip()}'", "remove it")
    if not any(
        re.match(r"^\s*[@#]includedir\s+/etc/sudoers\.d\b", line)
        for line in tree.lines("etc/sudoers")
    ):
        yield Note(
            "etc/sudoers", "has no @includedir /etc/sudoers.d", "add '@includedir /etc/sudoers.d'"
        )
