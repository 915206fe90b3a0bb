"""Fast Track (reference §7), end to end over loopback HTTP: the runner polls vmSettings
beside the WireServer goal state, runs what only vmSettings asks for, chooses the newer
of the two sources, reports to the chosen goal's status blob with FastTrack advertised
and goalStateAggregateStatus; a host without vmSettings (404) runs as before."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from azprov.simulator import Answer, SimulatedFabric
from azprov.simulator.service import Request
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fast_track import (
    freeze_extensions_config,
    publish_vm_settings,
    ticks,
)
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import NamedSpec, PluginSpec, SimulatedExtensions

NAME = "Fast.Access"
OTHER = "Fast.Sample"


def _publish_handlers(ext: SimulatedExtensions) -> None:
    ext.publish(NAME, "1.5.0", extension_zip(NAME, "1.5.0", style="access"))
    ext.publish(OTHER, "1.0.0", extension_zip(OTHER, "1.0.0", style="sample"))


def _vm_settings_requests(fabric: SimulatedFabric) -> list[Request]:
    return fabric.requests_to("hostplugin", "/vmSettings")


def _downloads(fabric: SimulatedFabric) -> list[str]:
    return [
        r.path
        for r in fabric.requests
        if r.service == "storage" or r.path.startswith("/extensionArtifact")
    ]


def _settings_status(ext: SimulatedExtensions, name: str) -> dict[str, Any]:
    entry = handler_entries(ext.status_document())[name]
    return entry["runtimeSettingsStatus"]


def _features(ext: SimulatedExtensions) -> list[str]:
    return [f["Key"] for f in ext.status_document()["supportedFeatures"]]


def _goal_status(ext: SimulatedExtensions) -> dict[str, Any]:
    aggregate = ext.status_document()["aggregateStatus"]
    status: dict[str, Any] = aggregate["vmArtifactsAggregateStatus"]["goalStateAggregateStatus"]
    return status


def _only_through_vm_settings(ext: SimulatedExtensions, **options: Any) -> str:
    """The WireServer keeps an ExtensionsConfig with no plugins; vmSettings ask for NAME."""
    _publish_handlers(ext)
    ext.plugins = []
    freeze_extensions_config(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1, public_settings={"greeting": "one"})]
    return publish_vm_settings(ext, **options)


def test_an_extension_only_in_vm_settings_reaches_success_then_takes_a_settings_change(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    first = _only_through_vm_settings(ext, in_svd_seq_no=1)
    incarnation = fabric.spec.incarnation
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        assert [(o["op"], o["seq"]) for o in agent.ops(NAME)] == [("enable", "1")]
        assert _settings_status(ext, NAME)["sequenceNumber"] == 1
        assert _settings_status(ext, NAME)["settingsStatus"]["status"]["status"] == "success"
        assert "FastTrack" in _features(ext)
        goal = _goal_status(ext)
        assert (goal["inSvdSeqNo"], goal["status"], goal["code"]) == ("1", "Success", 0)

        # A settings change through vmSettings alone: the WireServer's goal state stays.
        ext.plugins[0].seq_no = 2
        ext.plugins[0].public_settings = {"greeting": "two"}
        second = publish_vm_settings(ext, in_svd_seq_no=2)
        assert runner.round().exit_code == 0
    assert second != first and fabric.spec.incarnation == incarnation
    assert [(o["op"], o["seq"]) for o in agent.ops(NAME)] == [("enable", "1"), ("enable", "2")]
    assert _settings_status(ext, NAME)["sequenceNumber"] == 2
    assert _settings_status(ext, NAME)["settingsStatus"]["status"]["status"] == "success"
    assert _goal_status(ext)["inSvdSeqNo"] == "2"
    # The second round asked with the first ETag; the ExtensionsConfig was read once.
    assert _vm_settings_requests(fabric)[1].headers["if-none-match"] == first
    assert len(fabric.requests_to("wireserver", f"/machine/{fabric.spec.container_id}/")) == 1
    # vmSettings named the container, the config name and a correlation id.
    headers = _vm_settings_requests(fabric)[0].headers
    assert headers["x-ms-containerid"] == fabric.spec.container_id
    assert headers["x-ms-host-config-name"] and headers["x-ms-client-correlationid"]


def test_a_new_process_finds_the_fast_track_goal_newer_and_runs_nothing_again(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext)
    assert agent.once() == 0
    ops, downloads = agent.ops(NAME), len(_downloads(fabric))
    assert agent.once() == 0  # a new process: no ETag yet, both documents read again
    assert agent.ops(NAME) == ops and len(_downloads(fabric)) == downloads
    assert _settings_status(ext, NAME)["settingsStatus"]["status"]["status"] == "success"


def test_idle_rounds_cost_a_304_and_download_and_run_nothing(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        ops, downloads, uploads = agent.ops(NAME), len(_downloads(fabric)), len(ext.status_log)
        for _ in range(3):
            assert runner.round().exit_code == 0
    assert [r.status for r in _vm_settings_requests(fabric)] == [200, 304, 304, 304]
    assert agent.ops(NAME) == ops and len(_downloads(fabric)) == downloads
    assert len(ext.status_log) == uploads + 3  # status still goes up every round
    assert "FastTrack" in _features(ext)


def test_a_host_without_vm_settings_is_asked_once_and_runs_as_before(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish_handlers(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        per_round = len(fabric.requests)
        for _ in range(3):
            assert runner.round().exit_code == 0
        # A new seqNo through the WireServer runs as it always did.
        ext.plugins[0].seq_no = 2
        fabric.new_incarnation()
        assert runner.round().exit_code == 0
    assert [r.status for r in _vm_settings_requests(fabric)] == [404]
    # Each idle round: the goal state and the status PUT, nothing else.
    idle = fabric.requests[per_round : per_round + 6]
    assert [(r.service, r.method) for r in idle] == [
        ("wireserver", "GET"),
        ("hostplugin", "PUT"),
    ] * 3
    assert [o["seq"] for o in agent.ops(NAME)] == ["1", "2"]
    assert "FastTrack" not in _features(ext)
    assert "vmArtifactsAggregateStatus" not in ext.status_document()["aggregateStatus"]


def test_an_unknown_required_feature_fails_the_goal_state_and_says_why(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext, required_features=("NeuralExtensionsV9",), in_svd_seq_no=7)
    with agent.runner() as runner:
        runner.round()
    assert agent.ops(NAME) == []
    goal = _goal_status(ext)
    assert (goal["status"], goal["code"], goal["inSvdSeqNo"]) == ("Failed", 1, "7")
    assert "NeuralExtensionsV9" in goal["formattedMessage"]["message"]
    entry = handler_entries(ext.status_document())[NAME]
    assert "NeuralExtensionsV9" in entry["formattedMessage"]["message"]


def test_a_goal_state_on_hold_runs_nothing_until_one_that_is_not(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _only_through_vm_settings(ext, on_hold=True)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        assert runner.round().exit_code == 0
        assert agent.ops(NAME) == [] and _downloads(fabric) == []
        assert len(ext.status_log) == 2  # reported all the same
        assert sum("is on hold" in r.getMessage() for r in caplog.records) == 1
        publish_vm_settings(ext, on_hold=False)
        assert runner.round().exit_code == 0
    assert [o["op"] for o in agent.ops(NAME)] == ["enable"]


def test_a_410_on_vm_settings_refreshes_the_goal_state_and_asks_again(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext)
    old = fabric.spec.container_id
    fabric.moves_on_at(fabric.hostplugin, "/vmSettings")
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
    first, second = _vm_settings_requests(fabric)[:2]
    assert (first.headers["x-ms-containerid"], first.status) == (old, 410)
    assert (second.headers["x-ms-containerid"], second.status) == (fabric.spec.container_id, 200)
    assert [o["op"] for o in agent.ops(NAME)] == ["enable"]
    assert _settings_status(ext, NAME)["settingsStatus"]["status"]["status"] == "success"


def _created_on(ext: SimulatedExtensions, created: int) -> None:
    """The ExtensionsConfig says when it was made (InVMGoalStateMetaData@createdOnTicks)."""
    ext.rewrite_config = lambda text: text.replace(
        "<InVMGoalStateMetaData ", f'<InVMGoalStateMetaData createdOnTicks="{created}" '
    )


def test_an_older_extensions_config_never_replaces_the_fast_track_goal_a_newer_one_does(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish_handlers(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    _created_on(ext, ticks() - 10**9)
    publish_vm_settings(ext, created=ticks(), plugins=[PluginSpec(NAME, "1.5", seq_no=5)])
    with agent.runner() as runner:
        assert runner.round().exit_code == 0  # both new: the newer (vmSettings) runs
        assert [o["seq"] for o in agent.ops(NAME)] == ["5"]
        fabric.new_incarnation()  # a new incarnation, but its ExtensionsConfig is older
        assert runner.round().exit_code == 0
        assert [o["seq"] for o in agent.ops(NAME)] == ["5"]
        assert _settings_status(ext, NAME)["sequenceNumber"] == 5
        ext.plugins = [PluginSpec(NAME, "1.5", seq_no=6)]
        _created_on(ext, ticks() + 10**9)
        fabric.new_incarnation()  # and now a newer one
        assert runner.round().exit_code == 0
    assert [o["seq"] for o in agent.ops(NAME)] == ["5", "6"]


def test_vm_settings_from_the_fabric_are_ignored_but_fast_track_is_advertised(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish_handlers(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    publish_vm_settings(
        ext, source="Fabric", created=ticks() + 10**9, plugins=[PluginSpec(NAME, "1.5", seq_no=9)]
    )
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
    assert [o["seq"] for o in agent.ops(NAME)] == ["1"]
    assert "FastTrack" in _features(ext)


def test_vm_settings_that_stop_being_served_fall_back_to_a_newer_extensions_config(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext, created=ticks() - 10**9)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        fabric.withdraw_vm_settings()
        ext.rewrite_config = None
        ext.plugins = [PluginSpec(NAME, "1.5", seq_no=3)]
        _created_on(ext, ticks())
        assert runner.round().exit_code == 0
        assert runner.round().exit_code == 0
    assert [o["seq"] for o in agent.ops(NAME)] == ["1", "3"]
    assert [r.status for r in _vm_settings_requests(fabric)] == [200, 404]
    assert "FastTrack" not in _features(ext)


@pytest.mark.parametrize(
    "answer",
    [Answer(502, b"HostGAPlugin error"), Answer(200, b"{}", {"ETag": ""})],
    ids=["502", "200 without an ETag"],
)
def test_a_failed_vm_settings_request_is_not_retried_and_asked_again_only_after_a_pause(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    answer: Answer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _publish_handlers(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    publish_vm_settings(ext, plugins=[PluginSpec(NAME, "1.5", seq_no=4)])
    fabric.hostplugin.script([answer], "/vmSettings")
    with agent.runner() as runner:
        assert runner.round().exit_code == 0  # the ExtensionsConfig runs meanwhile
        assert runner.round().exit_code == 0
    assert len(_vm_settings_requests(fabric)) == 1
    assert [o["seq"] for o in agent.ops(NAME)] == ["1"]
    assert sum("vmSettings not had" in r.getMessage() for r in caplog.records) == 1


RUN_COMMAND = "Microsoft.CPlat.Core.RunCommandHandlerLinux"


def test_a_multi_config_handler_only_in_vm_settings_runs_and_removes_named_extensions(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    ext.publish(RUN_COMMAND, "1.3.2", extension_zip(RUN_COMMAND, "1.3.2", style="runcommand"))
    ext.plugins = []
    freeze_extensions_config(ext)
    ext.plugins = [
        PluginSpec(RUN_COMMAND, "1.3", named=[NamedSpec("first", 1), NamedSpec("second", 4)])
    ]
    publish_vm_settings(ext)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        ext.plugins[0].named = [NamedSpec("second", 4)]  # "first" is deleted, in vmSettings
        publish_vm_settings(ext)
        assert runner.round().exit_code == 0
    calls = [
        (o["op"], o["env"].get("ConfigExtensionName", ""), o["env"]["ConfigSequenceNumber"])
        for o in agent.ops(RUN_COMMAND)
    ]
    assert calls == [
        ("install", "first", "1"),
        ("enable", "first", "1"),
        ("enable", "second", "4"),
        ("disable", "first", "1"),
    ]
    entries = ext.status_document()["aggregateStatus"]["handlerAggregateStatus"]
    assert [e["runtimeSettingsStatus"]["extensionName"] for e in entries] == ["second"]
    assert {"FastTrack", "MultipleExtensionsPerHandler"} <= set(_features(ext))


def test_protected_settings_in_vm_settings_are_read_with_the_wireservers_certificates(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    fabric.spec.certificates = True
    _publish_handlers(ext)
    ext.plugins = []
    freeze_extensions_config(ext)
    ext.plugins = [
        PluginSpec(OTHER, "1.0", seq_no=2, protected_settings={"password": "Ft-S3cret"})
    ]
    publish_vm_settings(ext)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
    assert [o["op"] for o in agent.ops(OTHER)] == ["install", "enable"]
    decrypted = agent.lib(f"{OTHER}-1.0.0", "decrypted.json").read_text()
    assert decrypted == '{"password": "Ft-S3cret"}'
    assert len(fabric.requests_to("wireserver", f"/machine/{fabric.spec.container_id}/")) == 2
    assert "Ft-S3cret" not in ext.blobs["/status/vm.status"].decode()


def test_an_unusable_extensions_config_does_not_cost_the_fast_track_goal_state(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _only_through_vm_settings(ext)
    ext.rewrite_config = lambda _: "<Extensions><StatusUploadBlob statusBlobType='Append'/>"
    with agent.runner() as runner:
        assert runner.round().exit_code != 0  # the refused document is reported
        assert [o["op"] for o in agent.ops(NAME)] == ["enable"]
        assert runner.round().exit_code == 0
    assert _settings_status(ext, NAME)["settingsStatus"]["status"]["status"] == "success"


def test_a_crash_while_applying_vm_settings_has_them_fetched_whole_again(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from azprov.extensions.runner import Runner

    _only_through_vm_settings(ext)
    apply = Runner._apply_config
    crashes = [RuntimeError("a bug")]

    def crash_once(self: Runner, *args: Any) -> Any:
        if crashes:
            raise crashes.pop()
        return apply(self, *args)

    monkeypatch.setattr(Runner, "_apply_config", crash_once)
    with agent.runner() as runner:
        with pytest.raises(RuntimeError):
            runner.round()
        assert runner.round().exit_code == 0
    assert [r.status for r in _vm_settings_requests(fabric)] == [200, 200]
    assert [o["op"] for o in agent.ops(NAME)] == ["enable"]
