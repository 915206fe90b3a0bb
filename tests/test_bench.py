"""The benchmark's baseline really does the seed sample's job against the simulated fabric."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from azprov.simulator import SimulatedFabric
from tests.conftest import REPO

Run = subprocess.CompletedProcess[str]


def run_reference(script: str, fabric: SimulatedFabric, *python_options: str) -> Run:
    """One of the bench's reference scripts against the simulated fabric."""
    return subprocess.run(
        [
            sys.executable,
            *python_options,
            str(REPO / "bench" / script),
            fabric.wireserver_endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_baseline_reports_ready_like_the_seed_sample(fabric: SimulatedFabric) -> None:
    result = run_reference("baseline_report_ready.py", fabric)
    assert result.returncode == 0, result.stderr
    assert "Response: 200 OK" in result.stdout
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
    assert [(r.method, r.path) for r in fabric.requests_to("wireserver")] == [
        ("GET", "/machine?comp=goalstate"),
        ("POST", "/machine?comp=health"),
    ]


def test_floor_reports_ready_on_the_required_libraries(fabric: SimulatedFabric) -> None:
    """The native bench's reference: GET goal state, POST Ready, with httpx, click, defusedxml."""
    result = run_reference("floor_report_ready.py", fabric, "-X", "importtime")
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"httpx", "click", "defusedxml.ElementTree"} <= imported
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
    report = fabric.health_reports[0]
    assert [(r.method, r.path) for r in fabric.requests_to("wireserver")] == [
        ("GET", "/machine?comp=goalstate"),
        ("POST", "/machine?comp=health"),
    ]
    assert report.container_id and report.instance_id, report


def test_children_cpu_counts_a_waited_for_child() -> None:
    """The CPU measure the bench compares with: a child that burns CPU shows up in it."""
    spec = importlib.util.spec_from_file_location(
        "report_ready", REPO / "bench" / "report_ready.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    children_cpu = module.children_cpu

    before = children_cpu()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass",
        ],
        check=True,
        timeout=60,
    )
    assert children_cpu() - before >= 0.15
