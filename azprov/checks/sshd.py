"""sshd's effective configuration, as sshd itself would read it from the tree.

sshd_config(5): the first value obtained for a keyword wins; `Include` is
expanded where it stands (globs sorted, relative paths under /etc/ssh); global
values stop at the first `Match` of a file: in the main file that ends them,
in an included file only the rest of that file is conditional. A line is
`Keyword value`, `Keyword=value` or `Keyword = value`. azprov writes its per-VM policy at first
boot to `sshd_config.d/00-azprov.conf`, so the image is judged with that
drop-in in place.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shlex
from typing import Iterator, Optional

from azprov.checks.model import Note, check, unreadable
from azprov.checks.tree import Tree
from azprov.host.sshd import DROPIN, SSHD_CONFIG

AZPROV = DROPIN.lstrip("/")
# What azprov's drop-in sets at first boot (the values depend on the VM).
AZPROV_KEYWORDS = ("passwordauthentication",)
POLICY_KEYWORDS = (
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
)
_MAX_DEPTH = 16
# sshd's strdelim: the keyword, optional whitespace, at most one `=`, optional whitespace.
_LINE = re.compile(r"\s*([^\s=]+)\s*(?:=\s*)?(.*)$")


@dataclasses.dataclass(frozen=True)
class Setting:
    value: str
    where: str  # path:line; AZPROV for the drop-in azprov writes at first boot
    order: int = 0  # lines read before it: what comes before azprov's drop-in beats it


def _expand(tree: Tree, pattern: str) -> list[str]:
    if not pattern.startswith("/"):
        pattern = "/etc/ssh/" + pattern
    relative = pattern.lstrip("/")
    files = tree.glob(relative)
    directory, _, name = relative.rpartition("/")
    if directory == AZPROV.rpartition("/")[0] and fnmatch.fnmatchcase(
        AZPROV.rpartition("/")[2], name
    ):
        files = sorted(set(files) | {AZPROV})
    return files


def _words(line: str) -> list[str]:
    """The keyword (lower case) and its values; [] for a blank or comment line."""
    match = _LINE.match(line)
    if match is None or match.group(1).startswith("#"):
        return []
    try:
        values = shlex.split(match.group(2), comments=True)
    except ValueError:
        values = match.group(2).split("#", 1)[0].split()
    return [match.group(1).lower(), *values]


def _read(
    tree: Tree, path: str, found: dict[str, Setting], depth: int, skipped: list[str]
) -> None:
    """Collect first values from `path` up to its first Match (the rest of it is conditional)."""
    if path == AZPROV and not tree.exists(AZPROV):
        for keyword in (*AZPROV_KEYWORDS, AZPROV):
            found.setdefault(keyword, Setting("(set by azprov)", AZPROV, len(found)))
        return
    if tree.unreadable(path):
        skipped.append(path)
        return
    for number, line in enumerate(tree.lines(path), 1):
        words = _words(line)
        if not words:
            continue
        keyword = words[0]
        if keyword == "match":
            return
        if keyword == "include":
            for pattern in words[1:]:
                for included in _expand(tree, pattern):
                    if depth < _MAX_DEPTH:
                        _read(tree, included, found, depth + 1, skipped)
            continue
        found.setdefault(keyword, Setting(" ".join(words[1:]), f"{path}:{number}", len(found)))


def _config(tree: Tree) -> tuple[Optional[dict[str, Setting]], list[str]]:
    main = SSHD_CONFIG.lstrip("/")
    if tree.unreadable(main):
        return None, [main]
    if not tree.exists(main):
        return None, []
    found: dict[str, Setting] = {}
    skipped: list[str] = []
    _read(tree, main, found, 0, skipped)
    return found, skipped


def effective_config(tree: Tree) -> Optional[dict[str, Setting]]:
    """keyword (lower case) -> its effective global value; None without an sshd_config."""
    return tree.memo("sshd.config", lambda: _config(tree))[0]


def unreadable_files(tree: Tree) -> list[str]:
    """Config files sshd would read that are a FIFO, a link loop, unreadable…"""
    return tree.memo("sshd.config", lambda: _config(tree))[1]


@check(
    "sshd-effective-config",
    "error",
    consequence="the image overrides the per-VM SSH policy azprov sets",
    source="sshd_config(5); LISA verify_client_active_interval; MS RHEL doc",
)
def sshd_effective_config(tree: Tree) -> Iterator[Note]:
    cannot = unreadable(tree, *unreadable_files(tree))
    config = effective_config(tree)
    if cannot or config is None:
        yield from cannot  # a file sshd reads cannot be read here: every value is in doubt
        return
    azprov = config.get(AZPROV)
    for keyword in POLICY_KEYWORDS:
        setting = config.get(keyword)
        if azprov and setting and setting.where != AZPROV and setting.order < azprov.order:
            yield Note(
                setting.where,
                f"sets {keyword} {setting.value} and is read before {AZPROV}",
                "remove it, or rename the drop-in to sort after 00-azprov.conf",
            )
    empty = config.get("permitemptypasswords")
    if empty and empty.value.lower() == "yes":
        yield Note(empty.where, "sets PermitEmptyPasswords yes", "remove it")
    root = config.get("permitrootlogin")
    if root and root.value.lower() == "yes":
        yield Note(
            root.where,
            "sets PermitRootLogin yes",
            "use prohibit-password or no",
            severity="warn",
            consequence="root is locked, but a key planted later would let root in",
        )
    alive = config.get("clientaliveinterval")
    value = alive.value if alive else "0"
    if not value.isdigit() or not 1 <= int(value) <= 235:
        yield Note(
            alive.where if alive else SSHD_CONFIG.lstrip("/"),
            f"sets ClientAliveInterval {value}"
            if alive
            else "leaves ClientAliveInterval unset (0)",
            "set ClientAliveInterval 180",
            severity="warn",
            consequence="idle sessions are cut by Azure's load balancer; LISA fails the image",
        )
