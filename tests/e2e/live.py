"""A boot the test acts on while the guest runs (the pool scenarios' host side).

`live_boot` starts qemu as `vm.boot` does, with a QMP socket, and hands back a
`LiveVm` while the guest runs: the test waits on what the fabric saw (a Ready
report) or on what the guest's watcher wrote (its port, ttyS2, is a file that
grows), acts through QMP (link down and up, NIC unplugged and plugged, power
button), hands the VM over, then waits for the power-off and gets the same `Boot`
record as `vm.boot` returns. The fabric is the caller's: one fabric can serve
several boots of one VM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from azprov.simulator import SimulatedFabric
from tests.e2e.qemu_lock import qemu_lock
from tests.e2e.qmp import Qmp
from tests.e2e.vm import BOOT_TIMEOUT, Boot, Machine
from tests.e2e.watch import Change, parse_watch

T = TypeVar("T")
POLL = 0.1  # seconds between looks at a condition


@dataclasses.dataclass
class LiveVm:
    """A running guest: its fabric, its QMP session, and waits that fail loudly."""

    machine: Machine
    fabric: SimulatedFabric
    process: subprocess.Popen[bytes]
    qmp: Qmp
    started: float  # host time.monotonic() when qemu was started

    def wait_until(
        self, what: str, condition: Callable[[], Optional[T]], timeout: float = BOOT_TIMEOUT
    ) -> T:
        """`condition()`'s first true value, looked at every POLL seconds; an
        AssertionError naming `what` if qemu exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.machine.name}: qemu exited before {what}\n" + self.story()
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.machine.name}: no {what} within {timeout:g} s\n" + self.story()
                )
            time.sleep(POLL)

    def watched(self) -> list[Change]:
        """What the guest's watcher has written so far."""
        return parse_watch(_read(self.machine.watch_log))

    def now_watched(self, key: str) -> Optional[Change]:
        """The watcher's latest value of `key`."""
        changes = [change for change in self.watched() if change.key == key]
        return changes[-1] if changes else None

    def powered_off(self, timeout: float = BOOT_TIMEOUT) -> Boot:
        """Waits for qemu to exit (the guest powered off); the boot's record."""
        self.machine.wait(self.process, timeout)
        return self.machine.record(self.fabric, self.process, self.started)

    def story(self) -> str:
        """The fabric's transcript and the guest's last words, for a failed wait."""
        console = _read(self.machine.console).splitlines()[-40:]
        watch = _read(self.machine.watch_log).splitlines()[-30:]
        lines = ["--- fabric ---", *self.fabric.transcript()]
        lines += ["--- watch (tail) ---", *watch, "--- console (tail) ---", *console]
        return "\n".join(lines)


@contextlib.contextmanager
def live_boot(machine: Machine, fabric: SimulatedFabric) -> Iterator[LiveVm]:
    """qemu running `machine` against `fabric` (already started), under the qemu lock,
    with a QMP session; killed if the block ends before the guest powered off."""
    if machine.qmp is None:
        machine = dataclasses.replace(machine, qmp=machine.workdir / f"{machine.name}.qmp")
    assert machine.qmp is not None
    machine.qmp.unlink(missing_ok=True)
    with qemu_lock():
        started = time.monotonic()
        process = machine.start(fabric)
        try:
            while not machine.qmp.exists() and process.poll() is None:
                time.sleep(0.02)
            if process.poll() is not None:
                raise AssertionError(
                    f"{machine.name}: qemu did not start: {_read(machine.qemu_log)}"
                )
            with Qmp(machine.qmp) as qmp:
                yield LiveVm(machine, fabric, process, qmp, started)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def _read(path: Path) -> str:
    return path.read_text("utf-8", "replace") if path.exists() else ""
