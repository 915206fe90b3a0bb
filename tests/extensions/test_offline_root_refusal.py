"""`extensions --root TREE`: handlers run as root on this host, so an offline root
(whose config or lease picks the fabric) is refused unless the operator asks for it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_azprov
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"


def test_extensions_with_an_offline_root_refuses_to_run_handlers(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    run = run_azprov("--config", str(ext_config), "--root", str(target), "extensions", "--once")
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert "--run-handlers-on-this-host" in run.stderr
    assert ext.status_uploads == []  # refused before contacting anything
    assert not (target / f"var/lib/waagent/{NAME}-1.0.0").exists()


def test_extensions_with_an_offline_root_runs_handlers_when_asked(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    args = ("--config", str(ext_config), "--root", str(target), "extensions")
    run = run_azprov(*args, "--once", "--run-handlers-on-this-host")
    assert run.returncode == 0, run.stderr
    assert (target / f"var/lib/waagent/{NAME}-1.0.0/config/HandlerState").read_text() == "Enabled"
