"""A pool VM stopped while it waits (a reboot, a shutdown) and the unit's start timeout
kept from running out while it waits (sd_notify EXTEND_TIMEOUT_USEC). Real processes,
signals and a real notify socket; the simulated fabric's pool."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from azprov.simulate import prepare_root
from azprov.simulator import SimulatedFabric
from tests.conftest import needs_root, run_azprov
from tests.pool_scenario import CUSTOMER_USER, polling, pool_vm, wait_for

pytestmark = needs_root

EXTEND = re.compile(r"EXTEND_TIMEOUT_USEC=([0-9]+)\Z")


class NotifySocket:
    """What systemd would listen on: an AF_UNIX datagram socket, every message kept with
    the time (time.monotonic) it arrived."""

    def __init__(self, path: Path):
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        time.sleep(0.1)  # a datagram sent just before the process ended is read
        self._stop.set()
        self._thread.join()
        self._sock.close()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}


@contextlib.contextmanager
def notify_socket() -> Iterator[NotifySocket]:
    # Not under tmp_path: a socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="azprov-notify-") as directory:
        listener = NotifySocket(Path(directory, "notify"))
        try:
            yield listener
        finally:
            listener.close()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stopped_while_waiting_resumes_at_the_next_boot(tmp_path: Path, how: int) -> None:
    with pool_vm(tmp_path, "Savable", after=None) as vm, notify_socket() as notify:
        process = vm.start(env=notify.env)
        try:
            wait_for(lambda: polling(vm), what="the pool's Ready and the first poll")
            stopped_at = time.monotonic()
            process.send_signal(how)
            _, stderr = process.communicate(timeout=15)
        finally:
            process.kill()
        if how == signal.SIGTERM:
            # A oneshot stopped at shutdown: exit 0, so systemd records no failure (the
            # unit stays enabled and the next boot resumes); no NotReady, no traceback.
            assert process.returncode == 0, stderr
            assert "stopped while waiting in the Savable pool" in stderr
            assert "Traceback" not in stderr and "error" not in stderr.lower()
            # Nothing asks systemd for more time once it is stopping this unit.
            late = [m for at, m in notify.messages if at > stopped_at]
            assert late == [], late
        else:
            assert process.returncode == -signal.SIGKILL
        assert vm.reports() == [("Ready", "1")]
        marker = vm.marker()
        assert marker is not None and (marker["kind"], marker["phase"]) == ("Savable", "polling")
        assert not (vm.root / "var/lib/azprov/provisioned.json").exists()
        status = vm.status()
        line = next(x for x in status.stdout.splitlines() if x.startswith("Pool:"))
        assert "Savable, polling since its Ready at" in line, status.stdout
        shown = json.loads(vm.status("--json").stdout)["pool"]
        assert (shown["kind"], shown["phase"]) == ("Savable", "polling")
        assert 0 <= shown["waiting_seconds"] < 60

        vm.pool.hand_over()
        again = vm.provision()
        assert again.returncode == 0, again.stderr
        assert "resuming in the Savable pool" in again.stderr
        assert vm.reports() == [("Ready", "1"), ("Ready", "2")]  # no second Ready in the pool
        passwd = (vm.root / "etc/passwd").read_text()
        assert f"\n{CUSTOMER_USER}:" in passwd and vm.marker() is None


def test_a_waiting_pool_vm_extends_the_units_start_timeout(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Running", after=None) as vm, notify_socket() as notify:
        process = vm.start(env=notify.env)
        try:
            wait_for(lambda: polling(vm), what="the pool's Ready and the first poll")
            wait_for(lambda: notify.messages, timeout=5, what="a notification while waiting")
            vm.pool.hand_over()
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 0, stderr
        handed = vm.pool.handed_over_at
        assert handed is not None
        time.sleep(0.1)
        for _, message in notify.messages:
            assert EXTEND.match(message), message
        waiting = [m for at, m in notify.messages if at < handed]
        after = [m for at, m in notify.messages if at > handed]
        assert waiting and after, notify.messages
        # Each asks for minutes: enough for the rest of the run; systemd counts from receipt.
        for message in waiting + after:
            match = EXTEND.match(message)
            assert match and int(match.group(1)) >= 60_000_000, message


def test_a_vm_in_no_pool_sends_no_notification(tmp_path: Path) -> None:
    with SimulatedFabric() as fabric, notify_socket() as notify:
        root = tmp_path / "root"
        prepare_root(root, fabric.spec.vm_id)
        config = tmp_path / "azprov.conf"
        config.write_text(fabric.config_text(total_timeout=30))
        argv = ("--config", str(config), "--root", str(root), "provision")
        run = run_azprov(*argv, env=notify.env)
        assert run.returncode == 0, run.stderr
        time.sleep(0.1)
        assert notify.messages == []
