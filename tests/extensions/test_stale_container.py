"""A stale container, wherever the HostGAPlugin is used (reference §2, §6): a 400
InvalidContainerConfiguration or a 410 means the goal state moved on; azprov fetches it
again, takes the new container id and config name, and tries once more — for the status
upload as for manifests and packages. And one 5xx from storage does not lose a round's
status: the direct PUT is retried as every other call is."""

from __future__ import annotations

import logging
from typing import Optional

import pytest

from azprov.simulator import Answer, SimulatedFabric
from azprov.simulator.documents import role_config_name
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

SAMPLE = "Stale.Sample"
ACCESS = "Stale.Access"

REFUSALS = {
    "400 InvalidContainerConfiguration": None,  # the simulated HostGAPlugin's own answer
    "410": Answer(410, b"<Error><Code>Gone</Code></Error>"),
}


def _publish(ext: SimulatedExtensions) -> None:
    ext.publish(SAMPLE, "1.0.0", extension_zip(SAMPLE, "1.0.0", style="sample"))
    ext.publish(ACCESS, "1.5.0", extension_zip(ACCESS, "1.5.0", style="access"))
    ext.plugins = [PluginSpec(SAMPLE, "1.0", seq_no=1), PluginSpec(ACCESS, "1.5", seq_no=3)]


def _moves_on_at(fabric: SimulatedFabric, route: str, refusal: Optional[Answer]) -> None:
    """The next request to `route` finds the goal state moved to a new container."""
    fabric.moves_on_at(fabric.hostplugin, route, refusal)


def _goal_state_fetches(fabric: SimulatedFabric) -> int:
    return len(fabric.requests_to("wireserver", "/machine/?comp=goalstate"))


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_status_put_refused_as_the_container_moves_is_sent_again_for_the_new_one(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    refusal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _publish(ext)
    ext.storage_reachable = True
    ext.storage.script([Answer(503, b"ServerBusy")], "/status/")  # and storage is busy once
    old = fabric.spec.container_id
    _moves_on_at(fabric, "/status", REFUSALS[refusal])

    assert agent.once() == 0

    puts = fabric.requests_to("hostplugin", "/status")
    assert [p.headers["x-ms-containerid"] for p in puts] == [old, fabric.spec.container_id]
    assert puts[-1].headers["x-ms-host-config-name"] == role_config_name(fabric.spec)
    assert ext.status_uploads == [("HostGAPlugin", "BlockBlob")]
    assert _goal_state_fetches(fabric) == 2
    entries = handler_entries(ext.status_document())
    assert entries[SAMPLE]["status"] == entries[ACCESS]["status"] == "Ready"
    assert "fetching the goal state again" in caplog.text


def test_a_status_put_refused_twice_falls_back_to_storage_and_fetches_the_goal_state_once(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext)
    ext.storage_reachable = True
    refusal = Answer(400, b"<Error><Code>InvalidContainerConfiguration</Code></Error>")
    fabric.hostplugin.script([refusal, refusal], "/status")
    assert agent.once() == 0
    assert len(fabric.requests_to("hostplugin", "/status")) == 2
    assert _goal_state_fetches(fabric) == 2  # once for the round, once for the retry: no loop
    assert ext.status_uploads == [("storage", "BlockBlob")]


def test_the_next_round_applies_the_goal_state_the_refused_put_led_to(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        ext.plugins[1].seq_no = 4
        _moves_on_at(fabric, "/status", None)
        assert runner.round().exit_code == 0  # uploaded for the new container
        assert runner.round().exit_code == 0  # and the new goal state applied
    assert [o["seq"] for o in agent.ops(ACCESS)] == ["3", "4"]
    assert (
        handler_entries(ext.status_document())[ACCESS]["runtimeSettingsStatus"]["sequenceNumber"]
        == 4
    )


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_a_package_refused_as_the_container_moves_is_fetched_for_the_new_one(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric, refusal: str
) -> None:
    _publish(ext)
    _moves_on_at(fabric, "/extensionArtifact", REFUSALS[refusal])
    assert agent.once() == 0
    artifacts = fabric.requests_to("hostplugin", "/extensionArtifact")
    assert artifacts[0].status in (400, 410)
    assert {a.headers["x-ms-containerid"] for a in artifacts[1:]} == {fabric.spec.container_id}
    assert agent.op_names(SAMPLE) == ["install@1.0.0", "enable@1.0.0"]
    assert handler_entries(ext.status_document())[ACCESS]["status"] == "Ready"


def test_one_5xx_from_storage_does_not_lose_the_rounds_status(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    fabric.hostplugin.stop()
    ext.storage_reachable = True
    _publish(ext)
    ext.storage.script([Answer(503, b"ServerBusy")], "/status/")
    assert agent.once() == 0
    puts = [r for r in fabric.requests_to("storage", "/status/") if r.method == "PUT"]
    assert [p.status for p in puts] == [503, 201]
    assert ext.status_uploads == [("storage", "BlockBlob")]
    assert handler_entries(ext.status_document())[SAMPLE]["status"] == "Ready"
