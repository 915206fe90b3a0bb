"""One network configuration as the network checks see it: the NICs it applies to by
name and driver (globs as systemd's fnmatch reads them), or by MAC.

fnmatch compiles each distinct glob to a regular expression (a tenth of a
millisecond each): a pattern without a glob character is compared instead, and
the configs read together match at most MAX_GLOBS distinct globs.
"""

from __future__ import annotations

import dataclasses
import fnmatch

from azprov.checks.model import Note, unknown

# A real image matches its NICs with a few globs (`en*`, `eth*`); a megabyte of
# Name= globs took seconds. A config past this many (with those before it) is not read.
MAX_GLOBS = 1024


@dataclasses.dataclass(frozen=True)
class NetConfig:
    path: str
    stack: str  # networkd, NetworkManager, ifupdown, netplan, ifcfg
    dhcp4: bool
    names: tuple[str, ...] = ()  # name globs; empty: any name
    drivers: tuple[str, ...] = ()  # empty: any driver
    macs: tuple[str, ...] = ()

    def matches(self, name: str, driver: str) -> bool:
        """Could this apply to the NIC (MAC unknown: a MAC match never applies to a new VM)?"""
        if self.macs:
            return False
        if self.names and not any(glob_matches(name, n) for n in self.names):
            return False
        return not self.drivers or any(glob_matches(driver, d) for d in self.drivers)

    @property
    def globs(self) -> set[str]:
        return {pattern for pattern in self.names + self.drivers if is_glob(pattern)}

    @property
    def by_mac_only(self) -> bool:
        return bool(self.macs) and not self.names and not self.drivers

    @property
    def editable(self) -> bool:
        return self.path.startswith(("etc/", "run/"))


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern or "[" in pattern


def glob_matches(name: str, pattern: str) -> bool:
    """fnmatch.fnmatchcase, without a regular expression for a pattern with no glob in it."""
    return fnmatch.fnmatchcase(name, pattern) if is_glob(pattern) else name == pattern


def within_glob_budget(configs: list[NetConfig]) -> tuple[list[NetConfig], list[Note]]:
    """`configs` in order while their distinct globs stay within MAX_GLOBS, and
    `unknown:` for each one past it."""
    kept: list[NetConfig] = []
    unread: list[Note] = []
    seen: set[str] = set()
    for config in configs:
        new = config.globs - seen
        if len(seen) + len(new) > MAX_GLOBS:
            why = (
                f"{config.path} is not read: with the configs before it, it matches"
                f" more than {MAX_GLOBS} name or driver globs"
            )
            unread.append(unknown(config.path, why, "match eth0 or hv_netvsc with a few globs"))
            continue
        seen |= new
        kept.append(config)
    return kept, unread
