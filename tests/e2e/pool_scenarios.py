"""The host's side of the pre-provisioned pool boots (azure-fabric.md §7), one per kind.

A VM boots from a fresh copy of the image with the pool's placeholder media
(PreprovisionedVm, PreprovisionedVMType) and a fabric whose IMDS names the pool;
the test waits for the pool's Ready, does to the VM what the platform does at the
hand-over, and hands it over:
- Running: the NIC's link goes down and up (QMP set_link);
- Savable: the NIC is unplugged (ACPI hot-unplug, until qemu's DEVICE_DELETED) and a
  new one with another MAC is plugged in;
- OS disk: the power button (the host stops the VM); then the same disk boots again
  with the customer's media, the fabric already handed over.
At the hand-over the fabric still answers reprovisiondata 404 a few times while its
IMDS already names the customer: an agent that took the customer's identity from
IMDS before reprovisiondata would show it in the guest before the data was served.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Optional

from azprov.simulator import Answer, HealthReport, Request, SimulatedFabric, VmSpec
from azprov.simulator.documents import EXAMPLE_SSH_KEY, PublicKey, ovf_env_xml
from azprov.simulator.pool import REPROVISION_DATA, Pool, park_in_pool
from tests.e2e.image import BootFiles
from tests.e2e.live import LiveVm, live_boot
from tests.e2e.login import Login
from tests.e2e.qemu_lock import qemu_lock
from tests.e2e.vm import Boot, Machine, free_port, vm_id_for
from tests.e2e.watch import Timeline

RUNNING, SAVABLE, OS_DISK = "Running", "Savable", "PreprovisionedOSDisk"
POOL_USER, POOL_HOST = "pooladmin", "pool-vm-0042"
CUSTOMER_USER, CUSTOMER_HOST = "custadmin", "cust-vm-7"
POOL_INCARNATION = 5
NEW_MAC = "52:54:00:5a:00:02"
# reprovisiondata still 404 this many times after the hand-over (IMDS already the customer's).
LATE_DATA_POLLS = 3
POOL_READY_TIMEOUT = 300.0  # qemu start -> the pool's Ready (about 30-60 s under TCG)
STEP_TIMEOUT = 120.0  # one step of the hand-over, seen in the guest or the fabric
# From the network change to azprov's first reprovisiondata poll: seconds, or a hang.
POLL_TIMEOUT = 60.0
SMBIOS = {
    RUNNING: "7a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c01",
    SAVABLE: "7a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c02",
    OS_DISK: "7a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c03",
}


@dataclasses.dataclass
class PoolRun:
    """One pool VM's boots, what the test did when (host time.monotonic()), and the login."""

    kind: str
    pool: Pool
    boots: list[Boot]
    timelines: list[Timeline]
    marks: dict[str, float]
    login: Login
    qmp_events: list[dict[str, object]]

    @property
    def fabric(self) -> SimulatedFabric:
        return self.pool.fabric

    @property
    def last(self) -> Boot:
        return self.boots[-1]

    def readies(self) -> list[HealthReport]:
        return list(self.fabric.health_reports)

    def reprovision_requests(self) -> list[Request]:
        return self.fabric.requests_to("imds", REPROVISION_DATA)

    def served_at(self) -> Optional[float]:
        """When reprovisiondata was first answered with the customer's data."""
        return next((r.at for r in self.reprovision_requests() if r.status == 200), None)

    def describe(self) -> str:
        marks = ", ".join(f"{k} {v - self.boots[0].started:.2f}s" for k, v in self.marks.items())
        parts = [f"=== {self.kind} pool; host actions: {marks}; QMP events: {self.qmp_events}"]
        for boot, timeline in zip(self.boots, self.timelines):
            parts += [boot.describe(), "--- watch ---", timeline.describe()]
        return "\n".join([*parts, f"--- login ---\n{self.login}"])


def pool_spec(kind: str) -> VmSpec:
    """The placeholder the pool made the VM as."""
    smbios = SMBIOS[kind]
    return VmSpec(
        vm_id=vm_id_for(smbios),
        name=POOL_HOST,
        computer_name=POOL_HOST,
        admin_username=POOL_USER,
        public_keys=[PublicKey(EXAMPLE_SSH_KEY, f"/home/{POOL_USER}/.ssh/authorized_keys")],
        role_name=f"_{POOL_HOST}",
        incarnation=POOL_INCARNATION,
        container_id=f"5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1b{list(SMBIOS).index(kind):02d}",
    )


def customer_spec(kind: str, public_key: str) -> VmSpec:
    """The customer's VM: the same VM (VM ID), their name, user and key."""
    return VmSpec(
        vm_id=vm_id_for(SMBIOS[kind]),
        name=CUSTOMER_HOST,
        computer_name=CUSTOMER_HOST,
        admin_username=CUSTOMER_USER,
        public_keys=[PublicKey(public_key, f"/home/{CUSTOMER_USER}/.ssh/authorized_keys")],
    )


def customer_ovf(public_key: str) -> bytes:
    path = f"/home/{CUSTOMER_USER}/.ssh/authorized_keys"
    return ovf_env_xml(
        hostname=CUSTOMER_HOST, username=CUSTOMER_USER, public_keys=((path, public_key),)
    )


def media(workdir: Path, name: str, document: bytes) -> Path:
    """An ovf-env.xml on a UDF/ISO 9660 image, as Azure attaches its CD."""
    content = workdir / f"{name}-media"
    content.mkdir(exist_ok=True)
    (content / "ovf-env.xml").write_bytes(document)
    iso = workdir / f"{name}.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-udf", "-V", "rd_rdfe_stable", "-o", str(iso), str(content)],
        check=True,
    )
    return iso


def pool_media(workdir: Path, kind: str) -> Path:
    path = f"/home/{POOL_USER}/.ssh/authorized_keys"
    document = ovf_env_xml(
        hostname=POOL_HOST,
        username=POOL_USER,
        public_keys=((path, EXAMPLE_SSH_KEY),),
        preprovisioned_vm=True,
        preprovisioned_vm_type=kind,
    )
    return media(workdir, f"pool-{kind}", document)


def hand_over(pool: Pool, marks: dict[str, float]) -> None:
    """The customer takes the VM; reprovisiondata lags behind IMDS by a few polls."""
    late = Answer(404, b'{"error": "Not found"}', {"Content-Type": "application/json"})
    pool.fabric.imds.script([late] * LATE_DATA_POLLS, REPROVISION_DATA)
    pool.hand_over()
    marks["handed_over"] = time.monotonic()


def wait_for_pool_ready(vm: LiveVm) -> None:
    vm.wait_until("the pool's Ready", lambda: vm.fabric.health_reports, POOL_READY_TIMEOUT)


def wait_for_poll(vm: LiveVm, since: float, what: str) -> None:
    """Until azprov asks for reprovisiondata (after `since`): it waits for the customer."""
    requests = lambda: [r for r in vm.fabric.requests_to("imds", REPROVISION_DATA) if r.at > since]  # noqa: E731
    vm.wait_until(f"reprovisiondata poll {what}", requests, POLL_TIMEOUT)


def watched(vm: LiveVm, key: str) -> str:
    """The guest watcher's latest value of `key` ("" before its first look)."""
    change = vm.now_watched(key)
    return change.value if change else ""


def watched_nics(vm: LiveVm) -> str:
    return watched(vm, "nics")


def flip_link(vm: LiveVm, marks: dict[str, float]) -> None:
    """Running: the switch to the customer's network, once azprov waits for it."""
    vm.wait_until(
        "pool.json (waiting for the network change)",
        lambda: "pool.json" in watched(vm, "azprov").split(","),
        STEP_TIMEOUT,
    )
    marks["link_down"] = time.monotonic()
    vm.qmp.execute("set_link", name="n0", up=False)
    vm.wait_until("the link down in the guest", lambda: "/down" in watched_nics(vm), 30)
    time.sleep(1.0)  # the platform's switch takes a moment
    marks["link_up"] = time.monotonic()
    vm.qmp.execute("set_link", name="n0", up=True)
    wait_for_poll(vm, marks["link_up"], "after the link came back")


def swap_nic(vm: LiveVm, marks: dict[str, float]) -> None:
    """Savable: the NIC unplugged as soon as the Ready is in, a new one plugged in (into
    the slot just freed, so it gets the same name, as a new Azure NIC is eth0 again)."""
    (old_lease,) = watched(vm, "leases").split(",")
    marks["nic_unplugged"] = time.monotonic()
    vm.qmp.execute("device_del", id="nic0")
    vm.qmp.wait_event("DEVICE_DELETED", STEP_TIMEOUT, lambda data: data.get("device") == "nic0")
    marks["nic_deleted"] = time.monotonic()
    vm.wait_until("the NIC gone from the guest", lambda: watched_nics(vm) == "-", 30)
    vm.qmp.execute("device_add", driver="virtio-net-pci", netdev="n0", id="nic1", mac=NEW_MAC)
    marks["nic_added"] = time.monotonic()
    vm.wait_until("the new NIC in the guest", lambda: NEW_MAC in watched_nics(vm), 60)

    def new_lease() -> str:
        leases = [lease for lease in watched(vm, "leases").split(",") if lease != "-"]
        return next((lease for lease in leases if lease != old_lease), "")

    lease = vm.wait_until("DHCP lease on the new NIC", new_lease, 60)
    follow_address(vm, lease.split(":", 1)[1])
    wait_for_poll(vm, marks["nic_added"], "through the new NIC")


def follow_address(vm: LiveVm, address: str) -> None:
    """The host's SSH forward to the new NIC's address (qemu's DHCP gave the new MAC
    another), as Azure's public IP follows the customer's NIC."""
    port = vm.machine.ssh_port
    if port is None:
        return
    forward = f"tcp:127.0.0.1:{port}"
    removed = vm.qmp.hmp(f"hostfwd_remove n0 {forward}")
    assert "removed" in removed, f"hostfwd_remove n0 {forward}: {removed}"
    added = vm.qmp.hmp(f"hostfwd_add n0 {forward}-{address}:22")
    assert not added.strip(), f"hostfwd_add n0 {forward}-{address}:22: {added}"


def run_pool(image: BootFiles, workdir: Path, kind: str, key: Path) -> PoolRun:
    """One pool VM of `kind` from a fresh disk, to the customer's login."""
    public = Path(f"{key}.pub").read_text().strip()
    fabric = SimulatedFabric(spec=pool_spec(kind), advertised_base="http://168.63.129.16")
    pool = park_in_pool(fabric, kind, customer_spec(kind, public), customer_ovf(public))
    login = Login(free_port(), key, workdir, user=CUSTOMER_USER)
    fabric.wireserver.route("GET", "/e2e/login", login.answer)
    slug = {RUNNING: "running", SAVABLE: "savable", OS_DISK: "os-disk"}[kind]
    disk = image.copy_disk(workdir / f"{slug}.img")
    machine = Machine(
        image, disk, SMBIOS[kind], workdir, slug, "e2e.login", pool_media(workdir, kind),
        login.port, watch=True,
    )  # fmt: skip
    marks: dict[str, float] = {}
    boots, events = [], []
    # An OS disk's two boots are one VM's: no other qemu between them (qemu_lock.py).
    with fabric, qemu_lock():
        with live_boot(machine, fabric) as vm:
            wait_for_pool_ready(vm)
            marks["pool_ready"] = fabric.health_reports[0].at
            if kind == RUNNING:
                flip_link(vm, marks)
            elif kind == SAVABLE:
                swap_nic(vm, marks)
            if kind != OS_DISK:
                hand_over(pool, marks)
            else:
                time.sleep(2.0)  # a moment in the pool, as the host's stop is never at once
                marks["power_button"] = time.monotonic()
                vm.qmp.execute("system_powerdown")
            boots.append(vm.powered_off())
            events = list(vm.qmp.events)
        if kind == OS_DISK:
            marks["powered_off"] = time.monotonic()
            hand_over(pool, marks)
            customer = media(workdir, "customer", customer_ovf(public))
            again = dataclasses.replace(machine, name=f"{slug}-customer", cdrom=customer)
            with live_boot(again, fabric) as vm:
                boots.append(vm.powered_off())
    timelines = [
        Timeline.of(boot, dataclasses.replace(machine, name=name).watch_log)
        for boot, name in zip(boots, [slug, f"{slug}-customer"])
    ]
    return PoolRun(kind, pool, boots, timelines, marks, login, events)
