"""One Running pre-provisioned pool VM, from boot to the customer's login (bench/pps_compare.py).

The VM, its fabric and its media are the emulated-boot tests' Running pool VM
(tests/e2e/pool_scenarios.py: the placeholder's spec and media, the customer's
spec and ovf-env.xml), booted with tests/e2e/live.py (qemu under the qemu lock,
a QMP session, a forward from a host port to the guest's port 22). The test's
steps are not the bench's: the bench has no guest watcher, flips the link as
soon as the pool's Ready is in and hands over without the late 404s, so what it
times is the agents' own path.

Boot with the pool's placeholder media (PreprovisionedVm true, type Running);
wait for the pool's Ready; flip the NIC's link off and on through QMP (the
switch to the customer's network the agent waits for); hand the VM over
(reprovisiondata starts serving the customer's ovf-env.xml); then, all in host
time.monotonic():
- served: the fabric's arrival time of the first reprovisiondata request it
  answered 200;
- login-ready: the arrival of sshd's banner in the first round whose
  `ssh customer@...` then worked (bench/pps_login.py);
- final Ready: the arrival of the first Ready report after the hand-over.
The probe's GET /e2e/login is held until the login loop ends, so the guest
powers off only afterwards; its records (and cloud-init's log) come back on ttyS1,
among them sshd's first "Server listening" journal line, mapped to host time
through the probe's clock samples (Boot.guest_to_host): the guest's own account
of login-ready.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import threading
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The tests' guard, in this host process too: a connect, connect_ex, sendto or sendmsg
# to the real WireServer or IMDS address stops the bench before a packet leaves (the
# fabric's documents name 168.63.129.16 for the guest, which reaches it through qemu).
import guard_real_azure  # noqa: E402,F401
from pps_login import LoginLoop, LoginResult  # noqa: E402

from azprov.simulator import Answer, Request, SimulatedFabric  # noqa: E402
from azprov.simulator.pool import REPROVISION_DATA, Pool, park_in_pool  # noqa: E402
from tests.e2e.image import BootFiles  # noqa: E402
from tests.e2e.live import LiveVm, live_boot  # noqa: E402
from tests.e2e.pool_scenarios import (  # noqa: E402
    CUSTOMER_USER,
    RUNNING,
    SMBIOS,
    customer_ovf,
    customer_spec,
    pool_media,
    pool_spec,
)
from tests.e2e.vm import Boot, Machine, free_port  # noqa: E402

POOL_READY_TIMEOUT = 420.0  # boot to the pool's Ready, under TCG
LINK_DOWN_SECONDS = 1.0
HANDED_OVER_TIMEOUT = 300.0  # hand-over to login and final Ready
POWER_OFF_TIMEOUT = 240.0
# "[   40.071234] host sshd[512]: Server listening on 0.0.0.0 port 22." (short-monotonic)
_JOURNAL_TIME = re.compile(r"\[\s*(\d+)\.(\d{6})\]")


@dataclasses.dataclass
class Outcome:
    """One boot's marks (host time.monotonic(), None when not seen) and its records."""

    agent: str
    started: float
    pool_ready: Optional[float] = None
    handed_over: Optional[float] = None
    served: Optional[float] = None
    final_ready: Optional[float] = None
    sshd_listening: Optional[float] = None  # sshd's first "Server listening", guest clock mapped
    login: LoginResult = dataclasses.field(default_factory=LoginResult)
    powered_off: bool = False
    probe: dict[str, str] = dataclasses.field(default_factory=dict)
    sections: dict[str, str] = dataclasses.field(default_factory=dict)
    transcript: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)

    def since_served(self, at: Optional[float]) -> Optional[float]:
        return at - self.served if at is not None and self.served is not None else None


def _ready_after(fabric: SimulatedFabric, since: float) -> Optional[float]:
    return next(
        (r.at for r in fabric.health_reports if r.state == "Ready" and r.at >= since), None
    )


def _served(fabric: SimulatedFabric) -> Optional[float]:
    served = [r.at for r in fabric.requests_to("imds", REPROVISION_DATA) if r.status == 200]
    return min(served) if served else None


def run_pool_vm(
    agent: str, files: BootFiles, disk: Path, directory: Path, key: Path, name: str
) -> Outcome:
    """Boot `disk` as a Running pool VM, hand it over, measure; see the module's docstring."""
    public_key = Path(f"{key}.pub").read_text().strip()
    fabric = SimulatedFabric(spec=pool_spec(RUNNING), advertised_base="http://168.63.129.16")
    pool = park_in_pool(
        fabric, RUNNING, customer_spec(RUNNING, public_key), customer_ovf(public_key)
    )
    released = threading.Event()  # the probe's GET /e2e/login waits for the login loop

    def hold_probe(request: Request) -> Answer:
        released.wait(timeout=280)
        return Answer(200, b"ok\n")

    fabric.wireserver.route("GET", "/e2e/login", hold_probe)
    machine = Machine(
        files, disk, SMBIOS[RUNNING], directory, name, "e2e.login",
        cdrom=pool_media(directory, RUNNING), ssh_port=free_port(),
    )  # fmt: skip
    with fabric, live_boot(machine, fabric) as vm:
        outcome = Outcome(agent, vm.started)
        try:
            _scenario(vm, pool, outcome, key)
        except AssertionError as failure:  # a failed wait, with the fabric's and guest's story
            outcome.problems.append(str(failure))
        finally:
            released.set()
        try:
            _records(vm.powered_off(POWER_OFF_TIMEOUT), outcome)
        except AssertionError as failure:  # no power-off, qemu's error or a guest panic
            outcome.problems.append(str(failure))
        outcome.transcript = fabric.transcript()
    return outcome


def _records(boot: Boot, outcome: Outcome) -> None:
    outcome.powered_off = True
    outcome.probe, outcome.sections = boot.probe, boot.sections
    journal = _JOURNAL_TIME.match(boot.sections.get("sshd-listening", "").strip())
    if journal is not None:
        outcome.sshd_listening = boot.guest_to_host(int(journal.group(1) + journal.group(2)))


def _scenario(vm: LiveVm, pool: Pool, outcome: Outcome, key: Path) -> None:
    fabric = vm.fabric
    outcome.pool_ready = vm.wait_until(
        "the pool's Ready", lambda: _ready_after(fabric, 0.0), POOL_READY_TIMEOUT
    )
    vm.qmp.execute("set_link", name="n0", up=False)
    time.sleep(LINK_DOWN_SECONDS)
    vm.qmp.execute("set_link", name="n0", up=True)
    pool.hand_over()
    handed_over = pool.handed_over_at
    assert handed_over is not None
    outcome.handed_over = handed_over
    assert vm.machine.ssh_port is not None
    loop = LoginLoop(
        vm.machine.ssh_port,
        key,
        CUSTOMER_USER,
        deadline=handed_over + HANDED_OVER_TIMEOUT,
        agent_done=lambda: _ready_after(fabric, handed_over) is not None,
    )
    loop.start()
    try:
        vm.wait_until(
            "both a login and the final Ready",
            lambda: loop.done.is_set() and _ready_after(fabric, handed_over) is not None,
            HANDED_OVER_TIMEOUT,
        )
    finally:
        loop.stop()
        outcome.login = loop.result
        outcome.served = _served(fabric)
        outcome.final_ready = _ready_after(fabric, handed_over)
