"""A login from the host into an emulated guest, through qemu's forward to its port 22.

The guest's probe asks for it (GET /e2e/login, when `e2e.login` is on the kernel
command line) once sshd is up, and waits while the host scans the host keys sshd
offers and logs in with the provisioned key, trusting only the keys it was offered.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from azprov.simulator import Answer, Request, SimulatedFabric

LOGIN_TIMEOUT = 180.0  # seconds per host-side ssh command; TCG makes sshd slow


@dataclasses.dataclass
class Login:
    """A login from the host, run while the guest's probe waits on GET /e2e/login."""

    port: int
    key: Path
    workdir: Path
    user: str = "azureuser"
    offered: list[str] = dataclasses.field(default_factory=list)
    status: int | None = None
    output: str = ""
    errors: str = ""

    def answer(self, request: Request) -> Answer:
        try:
            self._run()
        except (OSError, subprocess.SubprocessError) as exc:  # the test shows it
            self.errors += f"{exc!r}\n"
        return Answer(200, b"ok\n")

    def _run(self) -> None:
        known = self.workdir / "known_hosts"
        scan = subprocess.run(
            [
                "ssh-keyscan", "-T", "60", "-p", str(self.port), "-t", "rsa,ecdsa,ed25519",
                "127.0.0.1",
            ],
            capture_output=True,
            text=True,
            timeout=LOGIN_TIMEOUT,
        )  # fmt: skip
        known.write_text(scan.stdout)
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(known)], capture_output=True, text=True, check=False
        )
        self.offered = sorted(
            f"{w[0]} {w[1]} {w[-1]}" for w in map(str.split, listed.stdout.splitlines()) if w
        )
        # Only the keys sshd offered are trusted: a login proves they are its keys.
        result = subprocess.run(
            [
                "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=60",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}",
                f"{self.user}@127.0.0.1", "id -un; hostname",
            ],
            capture_output=True,
            text=True,
            timeout=LOGIN_TIMEOUT,
        )  # fmt: skip
        self.status, self.output = result.returncode, result.stdout
        self.errors += scan.stderr[-2000:] + result.stderr[-2000:]

    def prepare(self, fabric: SimulatedFabric) -> None:
        fabric.wireserver.route("GET", "/e2e/login", self.answer)
