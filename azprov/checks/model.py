"""What a check is, what it finds, and running them.

Check ids are the fact sheet's ids (docs/CI gates rely on them); a check that
passes says nothing, so every line printed is something to act on or know.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from typing import Callable, Iterable, Optional, Union

from azprov.checks.tree import Tree

log = logging.getLogger(__name__)


class Severity(str, enum.Enum):
    """How much a finding matters. A closed set: `Severity("warning")` raises ValueError,
    so a misspelt severity fails where the note is made instead of counting nowhere.
    The value is what the text and JSON reports print."""

    ERROR = "error"
    WARN = "warn"
    INFO = "info"

    def __str__(self) -> str:  # "error", not "Severity.ERROR", in every Python's f-strings
        return self.value


# The fact sheet's order: the output follows it, so related checks stay together.
CHECK_IDS = (
    "prov-unit-enabled",
    "prov-agent-conflict",
    "network-online-wait",
    "azprov-runtime-deps",
    "modprobe-policy",
    "hyperv-drivers-initramfs",
    "fstab-boot-safe",
    "lvm-devices-file",
    "efi-fallback-loader",
    "arch-64bit",
    "grub-forbidden-params",
    "serial-console",
    "cmdline-recommended",
    "net-dhcp-configured",
    "net-config-not-pinned",
    "udev-persistent-net",
    "net-vf-unmanaged",
    "dhcp-timeout",
    "dhcp-dns-leftovers",
    "hostname-generic",
    "machine-id",
    "clone-shared-secrets",
    "ssh-host-keys",
    "passwords-locked",
    "authorized-keys",
    "leftover-users-sudoers",
    "shell-history",
    "agent-state-leftover",
    "cloud-cli-credentials",
    "logs-crash-tmp",
    "sudo-policy",
    "sshd-enabled",
    "sshd-effective-config",
    "swap-os-disk",
    "waagent-duties",
    "time-sync-ptp",
    "kvp-daemon",
    "selinux-labels",
    "package-currency",
    "image-file-size",
)


@dataclasses.dataclass(frozen=True, init=False)
class Note:
    """What one check saw: the path, the value there, and the fix in a few words.

    `severity` and `consequence` default to the check's own. A severity may be given
    as its text ("warn"); anything but the three raises ValueError at once.
    """

    path: str
    found: str
    fix: str
    severity: Optional[Severity]
    consequence: Optional[str]

    def __init__(
        self,
        path: str,
        found: str,
        fix: str,
        severity: Union[Severity, str, None] = None,
        consequence: Optional[str] = None,
    ) -> None:
        for name, value in (
            ("path", path),
            ("found", found),
            ("fix", fix),
            ("severity", None if severity is None else Severity(severity)),
            ("consequence", consequence),
        ):
            object.__setattr__(self, name, value)


def unknown(path: str, why: str, fix: str = "check it by hand") -> Note:
    """A check that cannot be decided from the tree: info, never a guess."""
    return Note(path, f"unknown: {why}", fix, Severity.INFO, consequence="not checked")


def unreadable(tree: Tree, *paths: str) -> list[Note]:
    """`unknown:` for each of `paths` that is there but cannot be read (a FIFO, a link loop…)."""
    return [
        unknown(path, f"{path} is {why}", f"make {path} a readable regular file")
        for path in paths
        for why in [tree.unreadable(path)]
        if why
    ]


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    path: str
    found: str
    fix: str
    source: str
    consequence: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))  # ValueError if not one

    def as_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "path": self.path,
            "found": self.found,
            "fix": self.fix,
            "source": self.source,
        }


CheckFunction = Callable[[Tree], Iterable[Note]]


@dataclasses.dataclass(frozen=True)
class Check:
    id: str
    severity: Severity
    consequence: str
    source: str
    run: CheckFunction
    reads: tuple[str, ...] = ()  # files it cannot decide without: unreadable -> unknown

    def findings(self, tree: Tree) -> list[Finding]:
        notes = unreadable(tree, *self.reads) or self.run(tree)
        return [
            Finding(
                self.id,
                note.severity or self.severity,
                note.path,
                note.found,
                note.fix,
                self.source,
                note.consequence or self.consequence,
            )
            for note in notes
        ]


REGISTRY: dict[str, Check] = {}


def check(
    check_id: str,
    severity: Union[Severity, str],
    *,
    consequence: str,
    source: str,
    reads: tuple[str, ...] = (),
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check under its fact-sheet id. When one of `reads` is present but
    unreadable (a FIFO, a link loop…), the check reports that as `unknown:` instead of
    running: it would otherwise read the file as absent and guess."""
    if check_id not in CHECK_IDS:
        raise ValueError(f"not a fact-sheet check: {check_id}")
    level = Severity(severity)  # ValueError for anything but the three

    def register(function: CheckFunction) -> CheckFunction:
        REGISTRY[check_id] = Check(check_id, level, consequence, source, function, reads)
        return function

    return register


@dataclasses.dataclass
class Outcome:
    findings: list[Finding]
    ran: int
    broken: list[str]  # ids of checks that crashed: the run could not be completed

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity == severity)

    @property
    def exit_code(self) -> int:
        if self.broken:
            return 2
        return 1 if self.count(Severity.ERROR) else 0


def run_checks(tree: Tree, ids: Iterable[str]) -> Outcome:
    """Run the given checks in sheet order; a crashing check is reported, never hidden."""
    wanted = set(ids)
    outcome = Outcome([], 0, [])
    for check_id in CHECK_IDS:
        if check_id not in wanted or check_id not in REGISTRY:
            continue
        outcome.ran += 1
        try:
            outcome.findings += REGISTRY[check_id].findings(tree)
        except Exception as exc:  # a bug or an unreadable tree: say which check, go on
            log.debug("check %s failed", check_id, exc_info=True)
            outcome.broken.append(check_id)
            outcome.findings.append(
                Finding(
                    check_id,
                    Severity.INFO,
                    "",
                    f"unknown: the check itself failed ({type(exc).__name__}: {exc})",
                    "report this as a bug in azprov",
                    "azprov",
                    "not checked",
                )
            )
    return outcome
