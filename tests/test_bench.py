"""The benchmark's baseline really does the seed sample's job against the simulated fabric."""

from __future__ import annotations

import subprocess
import sys

from azprov.simulator import SimulatedFabric
from tests.conftest import REPO


def test_baseline_reports_ready_like_the_seed_sample(fabric: SimulatedFabric) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "baseline_report_ready.py"),
            fabric.wireserver_endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Response: 200 OK" in result.stdout
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
    assert [(r.method, r.path) for r in fabric.requests_to("wireserver")] == [
        ("GET", "/machine?comp=goalstate"),
        ("POST", "/machine?comp=health"),
    ]
