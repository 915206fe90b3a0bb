"""A small QMP client for the emulated-VM tests: the host's side of a running qemu.

qemu listens on a unix socket (`-qmp unix:PATH,server=on,wait=off`); a client reads
the greeting, leaves negotiation mode with `qmp_capabilities`, then sends one command
at a time and reads lines until that command's answer. Asynchronous events
(DEVICE_DELETED, NIC_RX_FILTER_CHANGED, SHUTDOWN…) can come in between: they are kept
in `events`, in arrival order, for `wait_event`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable, Optional

CONNECT_TIMEOUT = 30.0  # qemu makes the socket early in its start-up, even under TCG
COMMAND_TIMEOUT = 60.0  # a command is answered at once; device_add waits for no guest


class QmpError(AssertionError):
    """qemu refused a command, or the monitor went away."""


class Qmp:
    """One QMP session: `execute` commands, `wait_event` for what qemu reports by itself."""

    def __init__(self, path: Path, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._sock = _connect(path, connect_timeout)
        self._buffer = b""
        greeting = self._read(COMMAND_TIMEOUT)
        if "QMP" not in greeting:
            raise QmpError(f"{path}: not a QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Qmp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run `command` with `arguments`; its `return` value, or QmpError with qemu's error."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._sock.sendall(json.dumps(message).encode() + b"\r\n")
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            try:
                reply = self._read(deadline - time.monotonic())
            except socket.timeout:
                raise QmpError(f"{command}: no answer within {COMMAND_TIMEOUT:g} s") from None
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                error = reply["error"]
                raise QmpError(f"{command} {arguments}: {error.get('class')}: {error.get('desc')}")
            elif "return" in reply:
                return reply["return"]

    def hmp(self, command_line: str) -> str:
        """A human monitor command (those QMP has no command of its own for, such as
        hostfwd_add); what it printed."""
        printed = self.execute("human-monitor-command", **{"command-line": command_line})
        return str(printed)

    def wait_event(
        self,
        name: str,
        timeout: float,
        matches: Optional[Callable[[dict[str, Any]], bool]] = None,
    ) -> dict[str, Any]:
        """The first event `name` (whose data `matches`, if given) seen so far or within
        `timeout` seconds; it is taken out of `events`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["event"] == name and (matches is None or matches(event.get("data", {}))):
                    self.events.remove(event)
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError(f"no {name} event within {timeout:g} s (seen: {self.events})")
            try:
                reply = self._read(min(left, 1.0))
            except socket.timeout:
                continue
            if "event" in reply:
                self.events.append(reply)

    def _read(self, timeout: float) -> dict[str, Any]:
        """The next message; socket.timeout when none comes in time (what was read of a
        message so far stays buffered)."""
        self._sock.settimeout(max(timeout, 0.01))
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QmpError(f"{self.path}: qemu closed the monitor")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise QmpError(f"{self.path}: not a QMP message: {line!r}")
        return message


def _connect(path: Path, timeout: float) -> socket.socket:
    """Connected to qemu's socket, waiting for qemu to make it."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if time.monotonic() > deadline:
                raise QmpError(f"{path}: no QMP socket within {timeout:g} s") from None
            time.sleep(0.05)
