"""The customer's login, tried from the host through qemu's forward to the guest's
port 22, until it works.

Connections go to the forward until one brings sshd's banner. slirp accepts on
the host side at once and only then tries the guest, so what comes back on a
connection tells three states apart:
- it closes at once: the guest refused (nothing listens on 22 yet); the next
  connection follows ROUND_GAP later, so sshd's start is seen within about that;
- the banner: sshd listens and answered; its arrival is the login-ready
  candidate (a customer's ssh exchanges keys from then on);
- silence: sshd accepted and has not answered yet (under TCG it re-executes
  itself per connection, some 0.7 s), or the guest has no address right now
  (slirp's SYN goes unanswered and is sent again only seconds later).
A silent connection is kept open (up to MAX_WAIT): closing it would throw away
the sshd child already starting on it, whose banner is the earliest to come (a
short wait per connection would never see a banner that takes 0.7 s, and a
doubling one cost a second or more whenever sshd was slower than the wait).
While the newest connection is silent, another joins it every FRESH_AFTER
seconds (at most MAX_OPEN open), so an address that appears late is found
without waiting on slirp's retransmission. Until sshd listens the loop costs
the guest one refused SYN per ROUND_GAP; after that, one sshd child per open
connection.

The banner counts only if a real `ssh customer@... id -un` with the customer's
key then works. That login is held until the agent's final Ready has arrived
(at most HOLD_LOGIN seconds), so its key exchange, seconds of guest CPU under
TCG, does not compete with the agent's last steps. It is a bare login, not
tests/e2e/login.py's (which first scans the host keys and pins them): a login
that fails (cloud-init's user not made yet) is tried again at the next banner,
and a host-key scan before each try would add seconds of TCG key exchanges to
the agent whose user comes late.
"""

from __future__ import annotations

import dataclasses
import selectors
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

ROUND_GAP = 0.1  # seconds from a refused connection to the next
FRESH_AFTER = 1.0  # a silent newest connection gets a fresh one beside it this often
MAX_OPEN = 3  # connections open at once (each one an sshd child once sshd listens)
MAX_WAIT = 8.0  # a connection silent this long is closed
HOLD_LOGIN = 60.0  # at most this long after the banner for the agent's final Ready
LOGIN_TIMEOUT = 120.0  # one ssh run; TCG makes sshd's key exchange slow


@dataclasses.dataclass
class LoginResult:
    """What the loop saw, in host time.monotonic()."""

    banner_at: Optional[float] = None  # sshd's first banner arrived
    login_ready: Optional[float] = None  # the banner of the round whose login worked
    login_asked: Optional[float] = None  # ... and when its connection was opened
    rounds: int = 0  # connections opened (refused, silent or answered)
    login_started: Optional[float] = None  # that login's ssh began (after any hold)
    login_done: Optional[float] = None  # ... and returned
    attempts: int = 0  # ssh runs (after sshd answered)
    output: str = ""
    errors: list[str] = dataclasses.field(default_factory=list)


class BannerWatch:
    """Connections to `port` until one of them brings sshd's banner (see the module)."""

    def __init__(self, port: int, result: LoginResult) -> None:
        self.port, self.result = port, result
        self._selector = selectors.DefaultSelector()
        self._opened: dict[socket.socket, float] = {}  # connection -> when it was opened

    def next_banner(self, stop: threading.Event, deadline: float) -> Optional[tuple[float, float]]:
        """When (host time.monotonic()) the connection that brought a banner was opened,
        and when the banner arrived; None once `stop` is set or at `deadline`. Every
        connection is closed on the way out."""
        next_open = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    return None
                for conn, opened in list(self._opened.items()):
                    if now - opened > MAX_WAIT:
                        self._close(conn)
                if now >= next_open and len(self._opened) < MAX_OPEN:
                    next_open = now + (FRESH_AFTER if self._open() else ROUND_GAP)
                    continue
                wake = next_open if len(self._opened) < MAX_OPEN else now + ROUND_GAP
                for key, _ in self._selector.select(min(max(wake - now, 0.0), 0.05)):
                    arrived = time.monotonic()
                    answered: socket.socket = key.data
                    if _first_bytes(answered).startswith(b"SSH-"):
                        return self._opened[answered], arrived
                    self._close(answered)  # refused: the next one soon
                    next_open = min(next_open, arrived + ROUND_GAP)
            return None
        finally:
            for conn in list(self._opened):
                self._close(conn)

    def _open(self) -> bool:
        self.result.rounds += 1
        try:  # slirp listens on the host side: this connects at once
            conn = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        except OSError:
            return False
        conn.setblocking(False)
        self._selector.register(conn, selectors.EVENT_READ, data=conn)
        self._opened[conn] = time.monotonic()
        return True

    def _close(self, conn: socket.socket) -> None:
        self._selector.unregister(conn)
        del self._opened[conn]
        conn.close()

    def close(self) -> None:
        self._selector.close()


def _first_bytes(conn: socket.socket) -> bytes:
    """What a readable connection holds: b"" for a close or reset."""
    try:
        return conn.recv(8)
    except OSError:
        return b""


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
        watch = BannerWatch(self.port, self.result)
        try:
            while not self._stop.is_set():
                banner = watch.next_banner(self._stop, self.deadline)
                if banner is None or self._try_login(*banner):
                    return
                self._stop.wait(ROUND_GAP)
        finally:
            watch.close()
            self.done.set()

    def _try_login(self, asked: float, banner: float) -> bool:
        """The login after the banner that arrived at `banner` on a connection opened at
        `asked` (held until the agent's final Ready); True once it worked, or when
        stopped while holding."""
        result = self.result
        if result.banner_at is None:
            result.banner_at = banner
        hold_until = time.monotonic() + HOLD_LOGIN
        while not self.agent_done() and time.monotonic() < hold_until:
            if self._stop.wait(0.05):
                return True
        started = time.monotonic()
        result.attempts += 1
        try:
            login = ssh_login(self.port, self.key, self.user)
        except subprocess.TimeoutExpired:
            result.errors.append(f"ssh ran over {LOGIN_TIMEOUT:g} s")
            return False
        if login.returncode == 0 and login.stdout.strip() == self.user:
            result.login_ready, result.login_asked = banner, asked
            result.login_started, result.login_done = started, time.monotonic()
            result.output = login.stdout.strip()
            return True
        result.errors.append(f"ssh exit {login.returncode}: {login.stderr.strip()[-300:]}")
        return False
