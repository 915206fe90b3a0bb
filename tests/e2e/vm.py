"""Boot a disk under qemu (TCG) against a simulated fabric on the host's loopback.

The guest reaches nothing but qemu's forwards (`restrict=on`): 10.0.2.100:80
and :32526 go to the fabric's WireServer and HostGAPlugin, 10.0.2.101:80 to
its IMDS, each through a socat that qemu starts per connection. The console
(ttyS0) and the probe's port (ttyS1) are files.
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
        samples = [
            r.at - int(parse_qs(urlsplit(r.path).query)["mono_us"][0]) / 1e6
            for r in self.fabric.requests_to("wireserver", "/e2e/clock")
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
    fabric = SimulatedFabric(spec=spec, advertised_base="http://168.63.129.16")
    clock_route(fabric)
    console = workdir / f"{name}.console.log"
    probe = workdir / f"{name}.probe.log"
    with fabric:
        ws, hp, imds = (service.port for service in fabric.services)

        def forward(address: str, port: int) -> str:
            return f"guestfwd=tcp:{address}-cmd:socat - TCP:127.0.0.1:{port}"

        netdev = ",".join(
            [
                "user,id=n0,restrict=on",
                forward("10.0.2.100:80", ws),
                forward("10.0.2.100:32526", hp),
                forward("10.0.2.101:80", imds),
            ]
            + ([f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22"] if ssh_port is not None else [])
        )
        argv = [
            "qemu-system-x86_64",
            "-machine", "accel=tcg",
            "-m", "1024",
            "-smp", "2",
            "-display", "none",
            "-monitor", "none",
            "-no-reboot",
            "-kernel", str(files.kernel),
            "-initrd", str(files.initrd),
            "-append",
            f"root=/dev/vda rw console=ttyS0 quiet {CRASH_ENDS_THE_BOOT} {extra_cmdline}".strip(),
            "-drive", f"file={disk},format=raw,if=virtio",
            "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=n0",
            "-smbios", f"type=1,uuid={smbios_uuid}",
            "-smbios", f"type=3,asset={AZURE_ASSET_TAG}",
            "-serial", f"file:{console}",
            "-serial", f"file:{probe}",
        ]  # fmt: skip
        if cdrom is not None:  # the provisioning media, as Azure attaches it
            argv += ["-drive", f"file={cdrom},format=raw,media=cdrom,if=ide,readonly=on"]
        if prepare is not None:
            prepare(fabric)
        started = time.monotonic()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _, stderr = process.communicate(timeout=BOOT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise AssertionError(
                f"{name}: the guest did not power off within {BOOT_TIMEOUT:g} s\n" + _tail(console)
            ) from None
        seconds = time.monotonic() - started
    if process.returncode != 0:
        raise AssertionError(
            f"{name}: qemu exited with {process.returncode}: "
            + stderr.decode("utf-8", "replace")[-2000:]
        )
    if _PANIC in _read(console):
        raise GuestPanicked(name, _read(console))
    report, sections = parse_probe(probe.read_text("utf-8", "replace"))
    return Boot(fabric, _read(console), report, sections, started, seconds)


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
