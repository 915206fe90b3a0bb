"""Telling systemd this unit is still making progress (sd_notify, without libsystemd).

azprov's unit is a oneshot with a start timeout: a normal first boot must end
within it. A pre-provisioned pool VM waits in the pool for as long as it takes
(hours, days) before it provisions; while it waits it asks systemd, again and
again, for more time (EXTEND_TIMEOUT_USEC; the unit sets NotifyAccess=main).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Optional

from azprov.errors import Terminated

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send `message` to the service manager; False when not run by one (or it failed)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", message.split("=")[0], exc)
        return False
    return True


def extend_start_timeout(seconds: float) -> bool:
    """From now, systemd waits at least `seconds` more before it gives up on this unit."""
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


class StartTimeoutKeeper:
    """While open, extends the unit's start timeout every `every` seconds by `extend`;
    on close, one last extension by `after` (the time the rest of the run may take)."""

    def __init__(self, every: float = 300.0, extend: float = 900.0, after: float = 1500.0):
        self.every, self.extend, self.after = every, extend, after
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> StartTimeoutKeeper:
        if extend_start_timeout(self.extend):
            self._thread = threading.Thread(target=self._keep, name="azprov-keep", daemon=True)
            self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(self.every):
            extend_start_timeout(self.extend)

    def __exit__(self, exc_type: Optional[type[BaseException]], *exc: object) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join()
        # Not when stopped (SIGTERM): EXTEND_TIMEOUT_USEC extends the timeout of the state
        # the unit is in, and a unit being stopped would keep a shutdown waiting 25 minutes.
        if exc_type is None or not issubclass(exc_type, Terminated):
            extend_start_timeout(self.after)
