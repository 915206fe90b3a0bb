"""Handler lifecycle over real HTTP against the simulated fabric, with real subprocesses."""

from __future__ import annotations

from azprov.simulator.extensions import PluginSpec, SimulatedExtensions, extension_zip
from tests.extensions.conftest import Agent, handler_entries

NAME = "Sim.TestExtension"


def test_install_then_enable_and_success_status_through_the_hostplugin(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish(NAME, "1.0.0", extension_zip(NAME, "1.0.0"))
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=3, public_settings={"k": "v"})]

    assert agent.once() == 0

    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "Ready"
    assert entry["handlerVersion"] == "1.0.0"
    settings = entry["runtimeSettingsStatus"]
    assert settings["sequenceNumber"] == 3
    assert settings["settingsStatus"]["status"]["status"] == "success"
    assert (
        settings["settingsStatus"]["status"]["formattedMessage"]["message"]
        == "enable done for seqNo 3"
    )
    assert ext.status_uploads == [("HostGAPlugin", "BlockBlob")]
