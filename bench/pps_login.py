"""The customer's login, tried from the host through qemu's forward to the guest's
port 22, until it works.

Each round opens a TCP connection to the forward and waits for sshd's banner.
slirp accepts on the host side at once and only then tries the guest, so what
comes back tells three states apart:
- the connection closes at once: the guest refused (nothing listens on 22
  yet); the next round starts ROUND_GAP later;
- the banner: sshd listens and answered; its arrival is the login-ready
  candidate (a customer's ssh would be exchanging keys from then on);
- silence: either the guest has no address right now (slirp's SYN is not
  answered, and its retransmission comes seconds later) or sshd is slow to
  answer (under TCG a busy guest's sshd re-executes itself per connection). The
  round is given up after its wait and a fresh one opened at once, the wait
  doubling each time (FIRST_WAIT to MAX_WAIT) and falling back to FIRST_WAIT
  after a refusal: a stale SYN never hides the moment sshd starts listening,
  and a slow sshd still gets long enough to answer.
One connection is open at a time, so until sshd listens the loop costs the guest
one refused SYN per round, and after that one sshd child per round.

The banner counts only if a real `ssh customer@... id -un` with the customer's
key then works. That login is held until the agent's final Ready has arrived
(at most HOLD_LOGIN seconds), so its key exchange, seconds of guest CPU under
TCG, does not compete with the agent's last steps.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

ROUND_GAP = 0.1  # seconds between a refused round and the next
FIRST_WAIT = 1.0  # a round's wait for the banner, doubled after each silent round
MAX_WAIT = 8.0
HOLD_LOGIN = 60.0  # at most this long after the banner for the agent's final Ready
LOGIN_TIMEOUT = 120.0  # one ssh run; TCG makes sshd's key exchange slow


@dataclasses.dataclass
class LoginResult:
    """What the loop saw, in host time.monotonic()."""

    banner_at: Optional[float] = None  # sshd's first banner arrived
    login_ready: Optional[float] = None  # the banner of the round whose login worked
    rounds: int = 0  # banner rounds (refused, silent or answered)
    login_started: Optional[float] = None  # that login's ssh began (after any hold)
    login_done: Optional[float] = None  # ... and returned
    attempts: int = 0  # ssh runs (after sshd answered)
    output: str = ""
    errors: list[str] = dataclasses.field(default_factory=list)


BANNER, REFUSED, SILENT = "banner", "refused", "silent"


def banner_round(port: int, wait: float) -> str:
    """One connection through the forward: BANNER, REFUSED (closed or reset) or SILENT
    (nothing within `wait` seconds)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
            return BANNER if conn.recv(8).startswith(b"SSH-") else REFUSED
    except socket.timeout:
        return SILENT
    except OSError:
        return REFUSED


def ssh_login(port: int, key: Path, user: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ssh", "-F", "/dev/null", "-p", str(port), "-i", str(key),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=60",
            # The host keys are made at provisioning: nothing to check them against.
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            f"{user}@127.0.0.1", "id -un",
        ],
        capture_output=True,
        text=True,
        timeout=LOGIN_TIMEOUT,
        check=False,
    )  # fmt: skip


class LoginLoop:
    """Tries the login in a thread until it works, `stop()` is called or `deadline`.

    `agent_done()` says whether the agent's final Ready has arrived (see HOLD_LOGIN).
    """

    def __init__(
        self, port: int, key: Path, user: str, deadline: float, agent_done: Callable[[], bool]
    ) -> None:
        self.port, self.key, self.user, self.deadline = port, key, user, deadline
        self.agent_done = agent_done
        self.result = LoginResult()
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="login-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=LOGIN_TIMEOUT + 5)

    def _run(self) -> None:
        result = self.result
        try:
            wait = FIRST_WAIT
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                result.rounds += 1
                seen = banner_round(self.port, wait)
                answered = time.monotonic()
                if seen == SILENT:
                    wait = min(wait * 2, MAX_WAIT)
                    continue
                wait = FIRST_WAIT
                if seen == REFUSED:
                    self._stop.wait(ROUND_GAP)
                    continue
                if result.banner_at is None:
                    result.banner_at = answered
                hold_until = time.monotonic() + HOLD_LOGIN
                while not self.agent_done() and time.monotonic() < hold_until:
                    if self._stop.wait(0.05):
                        return
                started = time.monotonic()
                result.attempts += 1
                try:
                    login = ssh_login(self.port, self.key, self.user)
                except subprocess.TimeoutExpired:
                    result.errors.append(f"ssh ran over {LOGIN_TIMEOUT:g} s")
                    continue
                if login.returncode == 0 and login.stdout.strip() == self.user:
                    result.login_ready = answered
                    result.login_started, result.login_done = started, time.monotonic()
                    result.output = login.stdout.strip()
                    return
                result.errors.append(f"ssh exit {login.returncode}: {login.stderr.strip()[-300:]}")
                self._stop.wait(ROUND_GAP)
        finally:
            self.done.set()
