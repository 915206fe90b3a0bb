"""One Running pre-provisioned pool VM, from boot to the customer's login (bench/pps_compare.py).

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
through the probe's clock samples: the guest's own account of login-ready.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from azprov.simulator import Answer, Request, SimulatedFabric, VmSpec  # noqa: E402
from azprov.simulator.documents import PublicKey, ovf_env_xml  # noqa: E402
from azprov.simulator.pool import REPROVISION_DATA, Pool, park_in_pool  # noqa: E402
from bench.pps_login import LoginLoop, LoginResult  # noqa: E402
from bench.pps_vm import RunningVm, qemu_argv, running  # noqa: E402
from tests.e2e.image import BootFiles  # noqa: E402
from tests.e2e.vm import clock_route, free_port, parse_probe, vm_id_for  # noqa: E402

CUSTOMER = "customer"
POOL_READY_TIMEOUT = 420.0  # boot to the pool's Ready, under TCG
LINK_DOWN_SECONDS = 1.0
HANDED_OVER_TIMEOUT = 300.0  # hand-over to login and final Ready
POWER_OFF_TIMEOUT = 240.0


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


def placeholder_spec(smbios_uuid: str) -> VmSpec:
    return VmSpec(
        vm_id=vm_id_for(smbios_uuid),
        name="pps-pool",
        computer_name="pps-pool",
        role_name="_pps-pool",
        admin_username="pooladmin",
        public_keys=[],
    )


def customer_spec(smbios_uuid: str, public_key: str) -> VmSpec:
    path = f"/home/{CUSTOMER}/.ssh/authorized_keys"
    return VmSpec(
        vm_id=vm_id_for(smbios_uuid),
        name="pps-customer",
        computer_name="pps-customer",
        admin_username=CUSTOMER,
        public_keys=[PublicKey(public_key, path)],
    )


def customer_ovf(spec: VmSpec) -> bytes:
    keys = tuple((key.path, key.key_data) for key in spec.public_keys)
    return ovf_env_xml(hostname=spec.computer_name, username=CUSTOMER, public_keys=keys)


def placeholder_media(directory: Path) -> Path:
    """The pool's ovf-env.xml on a UDF/ISO 9660 image, as Azure attaches it."""
    content = directory / "media"
    content.mkdir(exist_ok=True)
    (content / "ovf-env.xml").write_bytes(
        ovf_env_xml(
            hostname="pps-pool",
            username="pooladmin",
            preprovisioned_vm=True,
            preprovisioned_vm_type="Running",
        )
    )
    iso = directory / "pool-ovf.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-udf", "-V", "rd_rdfe_stable", "-o", str(iso), str(content)],
        check=True,
    )
    return iso


def _wait_until(condition: Callable[[], bool], vm: RunningVm, timeout: float) -> bool:
    """Poll `condition()` every 50 ms while qemu runs; False on timeout or qemu's exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and vm.alive():
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _ready_after(fabric: SimulatedFabric, since: float) -> Optional[float]:
    return next(
        (r.at for r in fabric.health_reports if r.state == "Ready" and r.at >= since), None
    )


def _served(fabric: SimulatedFabric) -> Optional[float]:
    served = [r.at for r in fabric.requests_to("imds", REPROVISION_DATA) if r.status == 200]
    return min(served) if served else None


def run_pool_vm(
    agent: str,
    files: BootFiles,
    disk: Path,
    smbios_uuid: str,
    directory: Path,
    key: Path,
    name: str,
) -> Outcome:
    """Boot `disk` as a Running pool VM, hand it over, measure; see the module's docstring."""
    public_key = Path(f"{key}.pub").read_text().strip()
    customer = customer_spec(smbios_uuid, public_key)
    fabric = SimulatedFabric(
        spec=placeholder_spec(smbios_uuid), advertised_base="http://168.63.129.16"
    )
    clock_route(fabric)
    pool: Pool = park_in_pool(fabric, "Running", customer, customer_ovf(customer))
    released = threading.Event()  # the probe's GET /e2e/login waits for the login loop

    def hold_probe(request: Request) -> Answer:
        released.wait(timeout=280)
        return Answer(200, b"ok\n")

    fabric.wireserver.route("GET", "/e2e/login", hold_probe)
    ssh_port = free_port()
    console, probe = directory / f"{name}.console.log", directory / f"{name}.probe.log"
    qmp_path = directory / f"{name}.qmp"
    media = placeholder_media(directory)
    with fabric:
        argv = qemu_argv(
            files, disk, fabric, smbios_uuid, console, probe, qmp_path,
            ssh_port=ssh_port, extra_cmdline="e2e.login", cdrom=media,
        )  # fmt: skip
        with running(argv, qmp_path, console) as vm:
            outcome = Outcome(agent, vm.started)
            try:
                _scenario(vm, fabric, pool, outcome, ssh_port, key)
            finally:
                released.set()
            outcome.powered_off = vm.wait(POWER_OFF_TIMEOUT)
            if not outcome.powered_off:
                outcome.problems.append(f"no power-off within {POWER_OFF_TIMEOUT:g} s")
                outcome.problems.append("console tail:\n" + vm.console_tail())
        outcome.transcript = fabric.transcript()
    if probe.exists():
        outcome.probe, outcome.sections = parse_probe(probe.read_text("utf-8", "replace"))
    outcome.sshd_listening = _sshd_listening(fabric, outcome.sections)
    return outcome


def _sshd_listening(fabric: SimulatedFabric, sections: dict[str, str]) -> Optional[float]:
    """sshd's first "Server listening" journal line (short-monotonic) as host
    time.monotonic(), through the probe's clock samples (the sample with the least
    transit gives the offset), as tests/e2e/vm.py does."""
    match = re.match(r"\[\s*(\d+\.\d+)\]", sections.get("sshd-listening", "").strip())
    offsets = [
        r.at - int(r.query["mono_us"][0]) / 1e6
        for r in fabric.requests_to("wireserver", "/e2e/clock")
        if r.query.get("mono_us", [""])[0].isdigit()
    ]
    if match is None or not offsets:
        return None
    return float(match.group(1)) + min(offsets)


def _scenario(
    vm: RunningVm, fabric: SimulatedFabric, pool: Pool, outcome: Outcome, port: int, key: Path
) -> None:
    if not _wait_until(lambda: _ready_after(fabric, 0.0) is not None, vm, POOL_READY_TIMEOUT):
        outcome.problems.append("no pool Ready:\n" + vm.console_tail())
        return
    outcome.pool_ready = _ready_after(fabric, 0.0)
    vm.qmp.set_link(False)
    time.sleep(LINK_DOWN_SECONDS)
    vm.qmp.set_link(True)
    pool.hand_over()
    handed_over = pool.handed_over_at
    assert handed_over is not None
    outcome.handed_over = handed_over
    loop = LoginLoop(
        port,
        key,
        CUSTOMER,
        deadline=handed_over + HANDED_OVER_TIMEOUT,
        agent_done=lambda: _ready_after(fabric, handed_over) is not None,
    )
    loop.start()
    try:
        finished = _wait_until(
            lambda: loop.done.is_set() and _ready_after(fabric, handed_over) is not None,
            vm,
            HANDED_OVER_TIMEOUT,
        )
    finally:
        loop.stop()
    outcome.login = loop.result
    outcome.served = _served(fabric)
    outcome.final_ready = _ready_after(fabric, handed_over)
    if not finished:
        outcome.problems.append(
            "not both login and final Ready within"
            f" {HANDED_OVER_TIMEOUT:g} s of the hand-over:\n" + vm.console_tail()
        )
