"""Shared fixtures: a simulated fabric on loopback and azprov run as a real process."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from azprov.simulator import SimulatedFabric

REPO = Path(__file__).resolve().parent.parent

# Make sure nothing a test starts can use a proxy or reach a real endpoint by accident.
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_name, None)

# The real Azure endpoints. No test may ever send a packet there.
REAL_AZURE_ADDRESSES = frozenset({"168.63.129.16", "169.254.169.254"})
# Every Python process a test starts loads tests/guard/sitecustomize.py, which
# stops it before it can connect to one of those addresses.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "tests" / "guard"), *filter(None, [os.environ.get("PYTHONPATH")])]
)


@pytest.fixture(autouse=True)
def _no_real_azure(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process guard: connect(), connect_ex(), sendto() or sendmsg() naming a real
    Azure address fails the test at once, before a packet leaves."""

    def refuse(address: object) -> None:
        if isinstance(address, tuple) and address and address[0] in REAL_AZURE_ADDRESSES:
            raise AssertionError(f"a test tried to reach the real Azure endpoint {address}")

    real = {n: getattr(socket.socket, n) for n in ("connect", "connect_ex", "sendto", "sendmsg")}

    def connect(sock: socket.socket, address: object) -> None:
        refuse(address)
        real["connect"](sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        refuse(address)
        return int(real["connect_ex"](sock, address))

    def sendto(sock: socket.socket, data: bytes, *rest: object) -> int:
        refuse(rest[-1] if rest else None)
        return int(real["sendto"](sock, data, *rest))

    def sendmsg(sock: socket.socket, buffers: object, *rest: object) -> int:
        refuse(rest[2] if len(rest) > 2 else None)
        return int(real["sendmsg"](sock, buffers, *rest))

    for name, guarded in (
        ("connect", connect),
        ("connect_ex", connect_ex),
        ("sendto", sendto),
        ("sendmsg", sendmsg),
    ):
        monkeypatch.setattr(socket.socket, name, guarded)


@pytest.fixture
def fabric() -> Iterator[SimulatedFabric]:
    """A started simulated fabric (WireServer, HostGAPlugin, IMDS) on 127.0.0.1."""
    with SimulatedFabric() as simulated:
        yield simulated


@pytest.fixture
def config_file(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    """An azprov.conf pointing every endpoint at `fabric`, with short budgets."""
    path = tmp_path / "azprov-test.conf"
    path.write_text(fabric.config_text(total_timeout=30), encoding="utf-8")
    return path


@dataclasses.dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_azprov(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
    """Run `python -m azprov ARGS` as a separate process, as a user or systemd would."""
    import time

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "azprov", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def start_azprov(*args: str) -> subprocess.Popen[str]:
    """Start `python -m azprov ARGS` in the background (stderr captured as text)."""
    return subprocess.Popen(
        [sys.executable, "-m", "azprov", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: useradd --prefix and chown (CI runs as root)"
)
