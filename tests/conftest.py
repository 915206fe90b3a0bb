"""Shared fixtures: a simulated fabric on loopback and azprov run as a real process."""

from __future__ import annotations

import dataclasses
import os
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


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: useradd --prefix and chown (CI runs as root)"
)
