from pathlib import Path

from azprov.simulator import SimulatedFabric
from tests.conftest import run_azprov


def test_report_ready_posts_ready_for_the_goal_state(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    run = run_azprov("--config", str(config_file), "--root", str(tmp_path), "report-ready")
    assert run.returncode == 0, run.stderr
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]


def test_version_names_python() -> None:
    run = run_azprov("--version")
    assert run.returncode == 0
    assert run.stdout.startswith("azprov 0.") and "Python 3." in run.stdout
