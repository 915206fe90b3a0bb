"""Handlers laid out and spelled like the published ones, run as the platform agent runs them."""

from __future__ import annotations

import json

import pytest

from azprov.extensions.commands import shell_command
from azprov.extensions.manifest import parse_handler_manifest
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import STYLES, extension_zip, handler_manifest
from tests.extensions.simulated import PluginSpec, SimulatedExtensions


def _status(document: dict, name: str) -> dict:
    return handler_entries(document)[name]["runtimeSettingsStatus"]["settingsStatus"]["status"]


def test_the_command_is_the_handler_folder_joined_in_front(tmp_path) -> None:
    folder = tmp_path / "Pub.Ext-1.0"
    assert shell_command(folder, "sample.py -install") == f"{folder}/sample.py -install"
    assert shell_command(folder, "/bin/x.sh enable") == f"{folder}/bin/x.sh enable"
    spaced = tmp_path / "with space" / "Pub.Ext-1.0"
    assert shell_command(spaced, "sample.py -e") == f"'{spaced}'/sample.py -e"


def test_a_manifest_with_a_byte_order_mark_is_read() -> None:
    content = handler_manifest("Pub.Ext", "1.0", "sample", bom=True)
    assert content.startswith(b"\xef\xbb\xbf")
    manifest = parse_handler_manifest(content, "Pub.Ext-1.0")
    assert manifest.commands["install"] == "sample.py -install"


@pytest.mark.parametrize("style", STYLES)
def test_each_published_shape_installs_enables_and_reports_success(
    ext: SimulatedExtensions, agent: Agent, style: str
) -> None:
    name = f"Shape.{style.capitalize()}"
    ext.publish(name, "1.0.0", extension_zip(name, "1.0.0", style=style))
    ext.plugins = [PluginSpec(name, "1.0", seq_no=4, public_settings={"k": "v"})]

    assert agent.once() == 0

    # The access shape's install is extension_noop.sh: only its enable is the handler.
    expected = ["enable"] if style == "access" else ["install", "enable"]
    assert [o["op"] for o in agent.ops(name)] == expected
    assert all(o["style"] == style for o in agent.ops(name))
    folder = agent.lib(f"{name}-1.0.0")
    assert all(o["cwd"] == str(folder) for o in agent.ops(name))
    entry = handler_entries(ext.status_document())[name]
    assert entry["status"] == "Ready"
    status = _status(ext.status_document(), name)
    assert status["status"] == "success"
    assert status["code"] == 0
    assert status["formattedMessage"]["message"] == "enable done for seqNo 4"
    assert "substatus" not in status  # a null substatus is none


def test_a_string_code_and_null_substatus_are_taken_as_written(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    name = "Shape.Access"
    ext.publish(name, "1.0.0", extension_zip(name, "1.0.0", style="access"))
    ext.plugins = [PluginSpec(name, "1.0", seq_no=0)]
    assert agent.once() == 0
    raw = json.loads((agent.lib(f"{name}-1.0.0") / "status/0.status").read_text())
    assert raw[0]["status"]["code"] == "0" and raw[0]["status"]["substatus"] is None
    assert _status(ext.status_document(), name)["status"] == "success"


def test_a_logger_that_truncates_its_stdout_leaves_a_usable_tail(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    name = "Shape.Access"
    ext.publish(name, "1.0.0", extension_zip(name, "1.0.0", style="access"))
    settings = {"enable": {"exit": 5, "stdout": "could not reset the password"}}
    ext.plugins = [PluginSpec(name, "1.0", seq_no=0, public_settings=settings)]
    # Earlier commands' output makes the log longer than what the handler leaves.
    log_dir = agent.root / "var/log/azure" / name
    log_dir.mkdir(parents=True)
    (log_dir / "commands.stdout.log").write_text("x" * 10000)

    assert agent.once() == 1

    message = _status(ext.status_document(), name)["formattedMessage"]["message"]
    assert "enable failed with exit code 5" in message
    assert "[stdout]\ncould not reset the password" in message
    assert "Errno" not in message


def test_heartbeat_bom_and_sub_folder_together(ext: SimulatedExtensions, agent: Agent) -> None:
    name = "Shape.Beat"
    package = extension_zip(
        name, "2.1.0", style="shebang", subfolder="Extension/", bom=True, reportHeartbeat="true"
    )
    ext.publish(name, "2.1.0", package)
    beat = {"enable": {"heartbeat": "Ready"}}
    ext.plugins = [PluginSpec(name, "2.1", seq_no=1, public_settings=beat)]
    assert agent.once() == 0
    entry = handler_entries(ext.status_document())[name]
    assert entry["status"] == "Ready"
    assert entry["formattedMessage"]["message"] == f"heart of {name}"
