"""What agents and the build leave behind: agent state, logs, crash dumps, temp files."""

from __future__ import annotations

from typing import Iterator

from azprov.checks.model import Note, check, unknown
from azprov.checks.tree import Tree
from azprov.host.kvp import POOL, POOL_CAP, decode_records

_AGENT_STATE = (
    "var/lib/waagent",
    "var/log/waagent.log",
    "var/log/azure",
    "var/lib/cloud/instance",
    "var/lib/cloud/instances",
    "var/lib/azprov",
)


@check(
    "agent-state-leftover",
    "error",
    consequence="the build VM's private keys and custom data (often secrets) ship to every clone",
    source="waagent deprovision; cloud-init clean; azprov deprovision",
)
def agent_state_leftover(tree: Tree) -> Iterator[Note]:
    for path in _AGENT_STATE + tuple(tree.glob("var/log/cloud-init*.log")):
        found = tree.lstat(path)
        if found is None or (tree.is_dir(path) and not tree.listdir(path)):
            continue
        yield Note(
            path, "is left from the build VM", f"remove {path} ('azprov deprovision' for azprov's)"
        )
    for path in tree.glob("var/lib/hyperv/.kvp_pool_*"):
        # Read as azprov reads its own pool (at most POOL_CAP): a pool that cannot be
        # read is not known to be empty.
        why = tree.unreadable(path, cap=POOL_CAP)
        if why:
            yield unknown(
                path, f"{path} is {why}", "remove it, or make it hv_kvp_daemon's pool file"
            )
            continue
        records = decode_records(tree.read_bytes(path, POOL_CAP) or b"")
        if records:
            keys = sorted({key for key, _ in records})
            fix = (
                "'azprov deprovision' removes azprov's" if path == POOL.lstrip("/") else "empty it"
            )
            yield Note(
                path,
                f"holds {len(records)} KVP record(s) ({', '.join(keys[:3])})",
                fix,
                severity="warn",
                consequence="old records mislead host-side diagnostics",
            )


def _files(tree: Tree, pattern: str) -> list[str]:
    return [p for p in tree.glob(pattern) if tree.size(p)]


_LOGS = (
    "var/log/*.log*",
    "var/log/messages*",
    "var/log/secure*",
    "var/log/syslog*",
    "var/log/wtmp*",
    "var/log/btmp*",
    "var/log/lastlog*",
    "var/log/audit/*",
    "var/log/apt/*",
    "var/log/installer/*",
    "var/log/anaconda/*",
    "var/log/journal/*/*",
    "var/lib/logrotate.status",
)


@check(
    "logs-crash-tmp",
    "warn",
    consequence="logs name the build host, users and addresses; dumps and temp files can hold secrets",
    source="virt-sysprep logfiles, crash-data, tmp-files, package-manager-cache, utmp",
)
def logs_crash_tmp(tree: Tree) -> Iterator[Note]:
    logs = sorted({p for pattern in _LOGS for p in _files(tree, pattern)})
    if logs:
        yield Note(
            "var/log", f"holds {len(logs)} log file(s), e.g. {logs[0]}", "truncate or remove them"
        )
    for area in ("var/crash", "tmp", "var/tmp"):
        entries = [
            n
            for n in tree.listdir(area)
            if not n.startswith((".X11", ".ICE", ".font", ".XIM", ".Test"))
        ]
        if entries:
            yield Note(
                area,
                f"holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, e.g. {entries[0]}",
                f"empty {area}",
            )
    for path in ("root/anaconda-ks.cfg", "root/original-ks.cfg"):
        text = tree.read_text(path)
        if text is not None:
            secret = "rootpw" in text or "--password" in text
            yield Note(
                path,
                "holds a password line" if secret else "exists",
                f"remove {path}",
                severity="error" if secret else None,
            )
    caches = _files(tree, "var/cache/apt/archives/*.deb") + _files(
        tree, "var/cache/dnf/*/packages/*"
    )
    if caches:
        yield Note(
            "var/cache",
            f"holds {len(caches)} downloaded package(s)",
            "apt-get clean / dnf clean all",
            severity="info",
            consequence="a larger image",
        )
