"""sshd's effective configuration, as sshd itself would read it from the tree.

Read by the one sshd_config reader (`azprov.host.sshd_config`), which provision
uses too: Include expanded in place, `Keyword=value` and quoting as sshd takes
them, the first global value winning, Match blocks (and what an Include under
one brings) holding no global value, except that a block every connection
matches (`Match all`, `Match User *`) overrides it, as sshd applies it per
connection after the global values. azprov writes its per-VM policy at first
boot to `sshd_config.d/00-azprov.conf`: an image without that file is judged
with it in place, as it will be read; a provisioned one with the file it has.
"""

from __future__ import annotations

from typing import Iterator, Optional

from azprov.checks.accounts import decimal
from azprov.checks.model import Note, check, unknown, unreadable
from azprov.checks.tree import Tree
from azprov.errors import HostError
from azprov.host.sshd import DROPIN
from azprov.host.sshd_config import (
    SSHD_CONFIG,
    Setting,
    SshdConfig,
    matches_every_connection,
    read_sshd_config,
)
from azprov.host.sshd_syntax import shown

AZPROV = DROPIN.lstrip("/")
POLICY_KEYWORDS = (
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
)
# Keywords the checks here read that sshd also takes under Match: for them a block
# matching every connection overrides the global value.
_MATCH_KEYWORDS = (
    *POLICY_KEYWORDS,
    "permitemptypasswords",
    "permitrootlogin",
    "clientaliveinterval",
    "authorizedkeysfile",
)
# What the drop-in holds at first boot; its value depends on the VM.
_AZPROV_DROPIN = b"PasswordAuthentication no\n"


def _config(tree: Tree) -> tuple[Optional[SshdConfig], list[Note]]:
    """The configuration, or the notes that say why it cannot be judged."""
    overlay = {} if tree.exists(AZPROV) else {DROPIN: _AZPROV_DROPIN}
    try:
        return read_sshd_config(tree.root, overlay=overlay), []
    except HostError as exc:
        path = exc.supporting_data.get("path", SSHD_CONFIG).lstrip("/")
        # A file sshd reads that is a FIFO, a link loop, over its cap…: every value is in doubt.
        return None, unreadable(tree, path) or [unknown(path, str(exc))]


def effective_config(tree: Tree) -> Optional[dict[str, Setting]]:
    """keyword (lower case) -> its effective global value; None without an sshd_config
    (or with one that cannot be read)."""
    config = tree.memo("sshd.config", lambda: _config(tree))[0]
    if config is None:
        return None
    found: dict[str, Setting] = {}
    for setting in config.settings:
        if not setting.conditional:
            found.setdefault(setting.keyword, setting)
    for keyword in _MATCH_KEYWORDS:
        overriding = config.for_every_connection(keyword)
        if overriding is not None:
            found[keyword] = overriding
    return found


def _match_blocks_allowing_passwords(config: SshdConfig) -> Iterator[Note]:
    """A Match block that turns password login on overrides azprov's policy for the
    connections it matches: sshd applies it after the global values."""
    for keyword in POLICY_KEYWORDS:
        for setting in config.in_match(keyword):
            if setting.value.lower() != "yes":
                continue
            match = shown(" ".join(setting.match))
            if matches_every_connection(setting.match):
                found = (
                    f"sets {keyword} yes under `Match {match}`, which overrides "
                    f"{AZPROV} for every connection"
                )
                fix = "remove it (provision removes it for PasswordAuthentication)"
            else:
                found = (
                    f"sets {keyword} yes under `Match {match}`: password login stays on "
                    "for those connections whatever the VM's policy"
                )
                fix = "remove it, or confirm those connections need passwords"
            yield Note(
                _where(setting),
                found,
                fix,
                severity="warn",
                consequence="password login is on where the VM's policy turned it off",
            )


def _where(setting: Setting) -> str:
    return setting.where.lstrip("/")


@check(
    "sshd-effective-config",
    "error",
    consequence="the image overrides the per-VM SSH policy azprov sets",
    source="sshd_config(5); LISA verify_client_active_interval; MS RHEL doc",
)
def sshd_effective_config(tree: Tree) -> Iterator[Note]:
    config, cannot = tree.memo("sshd.config", lambda: _config(tree))
    if cannot or config is None:
        yield from cannot
        return
    for problem in config.problems:
        where, _, why = problem.rpartition(": ")
        yield Note(
            where.lstrip("/"),
            f"{why}: sshd refuses to start with this configuration",
            "fix the line (sshd -t names it too)",
            consequence="sshd does not start: nobody can log in",
        )
    azprov = config.read_globally(DROPIN)
    for keyword in POLICY_KEYWORDS:
        setting = config.first(keyword)
        if azprov and setting and setting.path != DROPIN and setting.order < azprov.order:
            yield Note(
                _where(setting),
                f"sets {keyword} {setting.value} and is read before {AZPROV}",
                "remove it, or rename the drop-in to sort after 00-azprov.conf",
            )
    yield from _match_blocks_allowing_passwords(config)
    effective = effective_config(tree) or {}
    empty = effective.get("permitemptypasswords")
    if empty and empty.value.lower() == "yes":
        yield Note(_where(empty), "sets PermitEmptyPasswords yes", "remove it")
    root = effective.get("permitrootlogin")
    if root and root.value.lower() == "yes":
        yield Note(
            _where(root),
            "sets PermitRootLogin yes",
            "use prohibit-password or no",
            severity="warn",
            consequence="root is locked, but a key planted later would let root in",
        )
    alive = effective.get("clientaliveinterval")
    value = alive.value if alive else "0"
    seconds = decimal(value, 235)  # sshd reads ASCII digits only ('²' passes isdigit)
    if seconds is None or seconds < 1:
        yield Note(
            _where(alive) if alive else SSHD_CONFIG.lstrip("/"),
            f"sets ClientAliveInterval {value}"
            if alive
            else "leaves ClientAliveInterval unset (0)",
            "set ClientAliveInterval 180",
            severity="warn",
            consequence="idle sessions are cut by Azure's load balancer; LISA fails the image",
        )
