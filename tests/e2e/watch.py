"""What the guest's watcher saw (guest-pool/usr/local/sbin/e2e-pool-watch), on the host's clock.

The watcher writes `WATCH <µs> key=value` on ttyS2 whenever a look at the guest
(users, homes, host names, authorized keys, host keys, azprov's state files, NICs,
leases) differs from the last; <µs> is the guest's CLOCK_MONOTONIC, which
`Boot.guest_to_host` maps to the host's time.monotonic(). A change is seen at the
first look after it happened: its time is at most one look interval (0.1 s) late.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from tests.e2e.vm import Boot

LOOK_INTERVAL = 0.1  # seconds between the watcher's looks


class Change(NamedTuple):
    """`key` became `value` at guest time `guest_us`."""

    guest_us: int
    key: str
    value: str

    def items(self) -> list[str]:
        """The value as the list it is ("-": empty)."""
        return [] if self.value == "-" else self.value.split(",")


def parse_watch(text: str) -> list[Change]:
    changes = []
    for line in text.replace("\r", "").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "WATCH" and parts[1].isdigit() and "=" in parts[2]:
            key, _, value = parts[2].partition("=")
            changes.append(Change(int(parts[1]), key, value))
    return changes


@dataclasses.dataclass
class Timeline:
    """One boot's watched changes, each at its host time."""

    boot: Boot
    changes: list[Change]

    @classmethod
    def of(cls, boot: Boot, log: Path) -> Timeline:
        return cls(boot, parse_watch(log.read_text("utf-8", "replace") if log.exists() else ""))

    def at(self, change: Change) -> float:
        return self.boot.guest_to_host(change.guest_us)

    def values(self, key: str) -> list[Change]:
        return [change for change in self.changes if change.key == key]

    def first(self, key: str, holds: Callable[[Change], bool]) -> Optional[Change]:
        """The first change of `key` to a value for which `holds` is true."""
        return next((change for change in self.values(key) if holds(change)), None)

    def state_at(self, host_time: float) -> dict[str, str]:
        """Every key's value as last seen at or before `host_time`."""
        state: dict[str, str] = {}
        for change in self.changes:
            if self.at(change) <= host_time:
                state[change.key] = change.value
        return state

    def final(self) -> dict[str, str]:
        return {change.key: change.value for change in self.changes}

    def describe(self) -> str:
        """One line per change: host seconds since qemu started (guest seconds since its
        boot when the probe sent no clock samples: a boot that ended in the pool)."""
        try:
            when = [self.at(change) - self.boot.started for change in self.changes]
            clock = "s"
        except AssertionError:
            when = [change.guest_us / 1e6 for change in self.changes]
            clock = "s (guest)"
        lines = zip(when, self.changes)
        return "\n".join(f"{at:8.2f}{clock}  {c.key}={c.value}" for at, c in lines)
