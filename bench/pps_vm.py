"""A qemu boot the bench steers while it runs: QMP to flip the NIC's link, a host
port forwarded to the guest's sshd, the simulated fabric started by the caller.

tests/e2e/vm.py boots to power-off in one call; a pool scenario needs to act in
the middle (the NIC's link off and on after the pool's Ready, the hand-over, a
login loop), so the same machine (same argv: TCG, restrict=on, guestfwd to the
fabric, asset tag, probe on ttyS1) is started here in the background with a QMP
socket. Only one qemu runs at a time on the shared machine: the boot holds an
exclusive flock on /tmp/qemu.lock from start to exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from azprov.simulator import SimulatedFabric  # noqa: E402
from tests.e2e.image import BootFiles  # noqa: E402
from tests.e2e.vm import AZURE_ASSET_TAG, CRASH_ENDS_THE_BOOT  # noqa: E402

QEMU_LOCK = Path("/tmp/qemu.lock")
NETDEV = "n0"


class QmpError(RuntimeError):
    """QMP answered a command with an error, or the socket failed."""


class Qmp:
    """A minimal QMP client: one command at a time, events skipped."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:  # qemu creates the socket a moment after it starts
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.settimeout(timeout)
                self._socket.connect(str(path))
                break
            except OSError:
                self._socket.close()
                if time.monotonic() > deadline:
                    raise QmpError(f"no QMP socket at {path}") from None
                time.sleep(0.1)
        self._file = self._socket.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self._file.readline()
        if not line:
            raise QmpError("QMP closed the connection")
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: object) -> object:
        request: dict[str, object] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise QmpError(f"{command}: {reply['error']}")
            return reply.get("return")

    def set_link(self, up: bool) -> None:
        """The NIC's carrier as the guest sees it (set on the netdev and its NIC peer)."""
        self.execute("set_link", name=NETDEV, up=up)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._socket.close()


class RunningVm:
    """A qemu process in the background and its QMP connection."""

    def __init__(self, process: subprocess.Popen[bytes], qmp: Qmp, console: Path) -> None:
        self.process = process
        self.qmp = qmp
        self.console = console
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.process.poll() is None

    def console_tail(self, lines: int = 40) -> str:
        text = self.console.read_text("utf-8", "replace") if self.console.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float) -> bool:
        """Wait for the guest to power off; False if it has not within `timeout`."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def qemu_argv(
    files: BootFiles,
    disk: Path,
    fabric: SimulatedFabric,
    smbios_uuid: str,
    console: Path,
    probe: Path,
    qmp: Path,
    *,
    ssh_port: int,
    extra_cmdline: str = "",
    cdrom: Optional[Path] = None,
) -> list[str]:
    """tests/e2e/vm.py's machine, plus a QMP socket and the ssh forward."""
    ws, hp, imds = (service.port for service in fabric.services)

    def forward(address: str, port: int) -> str:
        return f"guestfwd=tcp:{address}-cmd:socat - TCP:127.0.0.1:{port}"

    netdev = ",".join(
        [
            f"user,id={NETDEV},restrict=on",
            forward("10.0.2.100:80", ws),
            forward("10.0.2.100:32526", hp),
            forward("10.0.2.101:80", imds),
            f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        ]
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
        "-device", f"virtio-net-pci,netdev={NETDEV}",
        "-smbios", f"type=1,uuid={smbios_uuid}",
        "-smbios", f"type=3,asset={AZURE_ASSET_TAG}",
        "-serial", f"file:{console}",
        "-serial", f"file:{probe}",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]  # fmt: skip
    if cdrom is not None:  # the provisioning media, as Azure attaches it
        argv += ["-drive", f"file={cdrom},format=raw,media=cdrom,if=ide,readonly=on"]
    return argv


@contextlib.contextmanager
def running(argv: list[str], qmp_path: Path, console: Path) -> Iterator[RunningVm]:
    """qemu started in the background under the machine-wide qemu lock; killed on the way
    out if the guest has not powered off by then."""
    with QEMU_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        qmp: Optional[Qmp] = None
        try:
            qmp = Qmp(qmp_path)
            yield RunningVm(process, qmp, console)
        finally:
            if qmp is not None:
                qmp.close()
            if process.poll() is None:
                process.kill()
            _, stderr = process.communicate()
            if process.returncode not in (0, -9) and stderr:
                print(f"qemu: {stderr.decode('utf-8', 'replace')[-1000:]}", file=sys.stderr)
