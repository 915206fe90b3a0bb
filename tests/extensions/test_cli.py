"""`azprov extensions` as a real process: --once, the loop, and bad input at the top level."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from azprov.simulator import Answer
from tests.conftest import run_azprov, start_azprov
from tests.extensions.conftest import handler_entries
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"


def test_once_from_the_command_line(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    run = run_azprov(
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--once",
        "--run-handlers-on-this-host",
    )
    assert run.returncode == 0, run.stderr
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"
    assert (target / f"var/lib/waagent/{NAME}-1.0.0/config/HandlerState").read_text() == "Enabled"


def test_once_exits_non_zero_when_a_handler_fails(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"exit": 2}})]
    run = run_azprov(
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--once",
        "--run-handlers-on-this-host",
    )
    assert run.returncode == 1
    assert "enable failed with exit code 2" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unusable_extensions_config_is_one_line_and_changes_nothing(
    ext: SimulatedExtensions, ext_config: Path, target: Path, fabric
) -> None:
    spec = fabric.spec
    fabric.wireserver.script(
        [
            Answer(
                200,
                b'<GoalState><Plugins><Plugin name="Pub.Ext" version="1"/></Plugins></GoalState>',
            )
        ],
        f"/machine/{spec.container_id}/{spec.role_name}?comp=config&type=extensionsConfig",
    )
    run = run_azprov(
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--once",
        "--run-handlers-on-this-host",
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("azprov: error:")]
    assert errors == [
        "azprov: error: ExtensionsConfig root='GoalState' is invalid: expected <Extensions>"
    ]
    assert "Traceback" not in run.stderr
    assert not (target / "var/lib/waagent").exists()
    assert ext.status_uploads == []


def test_the_loop_polls_uploads_every_round_and_stops_on_sigterm(
    ext: SimulatedExtensions, ext_config: Path, target: Path, fabric
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    process = start_azprov(
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--run-handlers-on-this-host",
    )
    try:
        deadline = time.monotonic() + 20
        while len(ext.status_uploads) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(ext.status_uploads) >= 3
        ext.plugins[0].seq_no = 2  # the loop notices a new incarnation
        fabric.new_incarnation()
        log = target / f"var/lib/waagent/{NAME}.ops.log"
        while log.read_text().count('"op": "enable"') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text().count('"op": "enable"') == 2
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "stopping (SIGTERM)" in stderr
    assert stderr.count("running install") == 1
