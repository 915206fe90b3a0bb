"""Boot a disk under qemu (TCG) against a simulated fabric on the host's loopback.

The guest reaches nothing but qemu's forwards (`restrict=on`): 10.0.2.100:80
and :32526 go to the fabric's WireServer and HostGAPlugin, 10.0.2.101:80 to
its IMDS, each through a socat that qemu starts per connection. The console
(ttyS0), the probe's port (ttyS1) and, for a guest watcher, a third port (ttyS2)
are files. Each boot holds the machine's qemu lock (qemu_lock.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from azprov.simulator import Answer, Request, SimulatedFabric, VmSpec
from tests.e2e.image import BootFiles
from tests.e2e.qemu_lock import qemu_lock

AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
BOOT_TIMEOUT = 420.0  # a TCG boot takes about 40-60 s; this is for a wedged guest
# A kernel Oops panics the guest and the panic reboots it, which -no-reboot turns into
# qemu's exit: a crashed guest ends its boot at once instead of after BOOT_TIMEOUT.
CRASH_ENDS_THE_BOOT = "oops=panic panic=-1"
_PANIC = "Kernel panic - not syncing"
# Multi-threaded TCG (qemu 7.2) can run a stale translation of kernel text that the
# other vCPU has just live-patched (a static key flipped with text_poke_bp): the guest
# traps on an int3 no longer in memory. Seen about once in ten Debian 13 boots
# (secure_tcp_seq_and_ts_off, right after the first TCP connect flips its once-key).
_TCG_INT3_RACE = re.compile(r"(?:Oops: )?int3: 0000 \[#1\]")


class GuestPanicked(AssertionError):
    """The guest's kernel panicked during the boot named `name`."""

    def __init__(self, name: str, console: str) -> None:
        self.name = name
        self.emulation_race = _TCG_INT3_RACE.search(console) is not None
        lines = console.splitlines()
        first = next((i for i, line in enumerate(lines) if "Oops" in line or _PANIC in line), 0)
        super().__init__(f"{name}: the guest kernel panicked:\n" + "\n".join(lines[first:][:40]))


def vm_id_for(smbios_uuid: str) -> str:
    """The vmId IMDS reports for a Generation 1 VM with this SMBIOS UUID (fields byte-swapped)."""
    return str(uuid.UUID(bytes=uuid.UUID(smbios_uuid).bytes_le))


@dataclasses.dataclass
class Boot:
    """What one boot left behind: the fabric's records, the console and the probe's report."""

    fabric: SimulatedFabric
    console: str
    probe: dict[str, str]
    sections: dict[str, str]
    started: float  # host time.monotonic() when qemu was started
    seconds: float

    def guest_to_host(self, guest_us: int) -> float:
        """A guest CLOCK_MONOTONIC reading (µs) as host time.monotonic()."""
        # A fabric may serve several boots of one VM (a pool's OS disk): each boot's
        # guest clock starts again, so only this boot's samples count.
        ended = self.started + self.seconds
        samples = [
            r.at - int(parse_qs(urlsplit(r.path).query)["mono_us"][0]) / 1e6
            for r in self.fabric.requests_to("wireserver", "/e2e/clock")
            if self.started <= r.at <= ended
        ]
        if not samples:
            raise AssertionError("the probe sent no clock samples:\n" + self.console_tail())
        # The smallest offset is the sample that spent least time in transit.
        return guest_us / 1e6 + min(samples)

    def unit_time(self, unit: str, prop: str) -> Optional[float]:
        value = self.probe.get(f"{unit}:{prop}", "")
        return self.guest_to_host(int(value)) if value.isdigit() and int(value) else None

    def agent_requests(self) -> list[Request]:
        """Requests from anything but the probe."""
        return [r for r in self.fabric.requests if not r.path.startswith("/e2e/")]

    def console_tail(self, lines: int = 60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])

    def describe(self) -> str:
        """Everything needed to see why an assertion failed."""
        return (
            f"--- probe ---\n{json.dumps(self.probe, indent=1)}\n"
            + "".join(f"--- {name} ---\n{text}\n" for name, text in self.sections.items())
            + "--- fabric ---\n"
            + "\n".join(self.fabric.transcript())
            + f"\n--- console (tail) ---\n{self.console_tail()}"
        )


def clock_route(fabric: SimulatedFabric) -> None:
    fabric.wireserver.route("GET", "/e2e/clock", lambda request: Answer(200, b"ok\n"))


@dataclasses.dataclass(frozen=True)
class Machine:
    """How qemu is started for one boot, besides the fabric it talks to."""

    files: BootFiles
    disk: Path
    smbios_uuid: str
    workdir: Path
    name: str
    extra_cmdline: str = ""
    cdrom: Optional[Path] = None  # the provisioning media, as Azure attaches it
    ssh_port: Optional[int] = None  # a host loopback port forwarded to the guest's 22
    qmp: Optional[Path] = None  # a QMP socket for a test that acts while the guest runs
    mac: Optional[str] = None  # the NIC's MAC (qemu's default: 52:54:00:12:34:56)
    watch: bool = False  # a third serial port (ttyS2) into <name>.watch.log

    @property
    def console(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    @property
    def probe(self) -> Path:
        return self.workdir / f"{self.name}.probe.log"

    @property
    def watch_log(self) -> Path:
        return self.workdir / f"{self.name}.watch.log"

    @property
    def qemu_log(self) -> Path:
        return self.workdir / f"{self.name}.qemu.log"

    def argv(self, fabric: SimulatedFabric) -> list[str]:
        """qemu's command line: netdev `n0` and NIC `nic0` (ids QMP commands name)."""
        ws, hp, imds = (service.port for service in fabric.services)

        def forward(address: str, port: int) -> str:
            return f"guestfwd=tcp:{address}-cmd:socat - TCP:127.0.0.1:{port}"

        forwards = [
            forward("10.0.2.100:80", ws),
            forward("10.0.2.100:32526", hp),
            forward("10.0.2.101:80", imds),
        ]
        if self.ssh_port is not None:
            forwards.append(f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22")
        netdev = ",".join(["user,id=n0,restrict=on", *forwards])
        nic = "virtio-net-pci,netdev=n0,id=nic0" + (f",mac={self.mac}" if self.mac else "")
        cmdline = (
            f"root=/dev/vda rw console=ttyS0 quiet {CRASH_ENDS_THE_BOOT} {self.extra_cmdline}"
        )
        argv = [
            "qemu-system-x86_64",
            "-machine", "accel=tcg",
            "-m", "1024",
            "-smp", "2",
            "-display", "none",
            "-monitor", "none",
            "-no-reboot",
            "-kernel", str(self.files.kernel),
            "-initrd", str(self.files.initrd),
            "-append", cmdline.strip(),
            "-drive", f"file={self.disk},format=raw,if=virtio",
            "-netdev", netdev,
            "-device", nic,
            "-smbios", f"type=1,uuid={self.smbios_uuid}",
            "-smbios", f"type=3,asset={AZURE_ASSET_TAG}",
            "-serial", f"file:{self.console}",
            "-serial", f"file:{self.probe}",
        ]  # fmt: skip
        if self.watch:
            argv += ["-serial", f"file:{self.watch_log}"]
        if self.qmp is not None:
            argv += ["-qmp", f"unix:{self.qmp},server=on,wait=off"]
        if self.cdrom is not None:
            argv += ["-drive", f"file={self.cdrom},format=raw,media=cdrom,if=ide,readonly=on"]
        return argv

    def start(self, fabric: SimulatedFabric) -> subprocess.Popen[bytes]:
        """qemu running this machine (the caller holds the qemu lock). Its stderr goes to
        a file: a pipe nobody reads while a test acts on the guest could fill and stop it."""
        clock_route(fabric)
        with self.qemu_log.open("wb") as stderr:
            return subprocess.Popen(
                self.argv(fabric),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def wait(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Until qemu exits; killed, and an AssertionError, after `timeout` seconds."""
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(
                f"{self.name}: the guest did not power off within {timeout:g} s\n"
                + _tail(self.console)
            ) from None

    def record(
        self, fabric: SimulatedFabric, process: subprocess.Popen[bytes], started: float
    ) -> Boot:
        """The Boot record of a qemu that has exited."""
        seconds = time.monotonic() - started
        if process.returncode != 0:
            raise AssertionError(
                f"{self.name}: qemu exited with {process.returncode}: "
                + _read(self.qemu_log)[-2000:]
            )
        console = _read(self.console)
        if _PANIC in console:
            raise GuestPanicked(self.name, console)
        report, sections = parse_probe(_read(self.probe))
        return Boot(fabric, console, report, sections, started, seconds)


def boot(
    files: BootFiles,
    disk: Path,
    spec: VmSpec,
    smbios_uuid: str,
    workdir: Path,
    *,
    name: str,
    extra_cmdline: str = "",
    cdrom: Optional[Path] = None,
    prepare: Optional[Callable[[SimulatedFabric], None]] = None,
    ssh_port: Optional[int] = None,
) -> Boot:
    """Boot `disk` once, until the probe powers the guest off; return the records.

    `prepare`, if given, is called with the started fabric before qemu starts.
    `ssh_port`, if given, is a host loopback port forwarded to the guest's port 22
    (the one way in: `restrict=on` leaves explicit forwards working).
    """
    machine = Machine(files, disk, smbios_uuid, workdir, name, extra_cmdline, cdrom, ssh_port)
    fabric = SimulatedFabric(spec=spec, advertised_base="http://168.63.129.16")
    with fabric, qemu_lock():
        if prepare is not None:
            prepare(fabric)
        started = time.monotonic()
        process = machine.start(fabric)
        machine.wait(process, BOOT_TIMEOUT)
        return machine.record(fabric, process, started)


def free_port() -> int:
    """A loopback port nothing listens on now (qemu binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def parse_probe(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """`PROBE key=value` lines and `PROBE-SECTION name` blocks from the probe's port."""
    values: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: Optional[str] = None
    for line in text.replace("\r", "").splitlines():
        if line.startswith("PROBE "):
            key, _, value = line[len("PROBE ") :].partition("=")
            values[key] = value
            current = None
        elif line.startswith("PROBE-SECTION "):
            current = line.split(" ", 1)[1].strip()
            if current == "end":
                current = None
            else:
                sections[current] = []
        elif line.startswith("PROBE-"):
            values[line] = ""
            current = None
        elif current is not None:
            sections[current].append(line)
    return values, {name: "\n".join(lines) for name, lines in sections.items()}


def _read(path: Path) -> str:
    return path.read_text("utf-8", "replace") if path.exists() else ""


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])
