"""Multi-config handlers (reference §8): named extensions under one handler, each with its
own settings, status and state files, run with `ConfigExtensionName`, enabled and removed
alone, and reported one handlerAggregateStatus entry each with its extensionName.

The handler is the fleet's `runcommand` style, laid out as RunCommand v2
(Microsoft.CPlat.Core.RunCommandHandlerLinux) ships; the goal state is served over
loopback by the simulated fabric in the shape the platform sends.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from azprov.extensions.goal import parse_extensions_config
from azprov.simulator import SimulatedFabric
from tests.extensions.conftest import Agent
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import NamedSpec, PluginSpec, SimulatedExtensions

RUN_COMMAND = "Microsoft.CPlat.Core.RunCommandHandlerLinux"
FOLDER = f"{RUN_COMMAND}-1.3.2"
OTHER = "Sim.Sample"
BOOT_ID = "proc/sys/kernel/random/boot_id"
FIRST_BOOT = "5c1b1f3e-0000-4000-8000-00000000000a"
SECOND_BOOT = "5c1b1f3e-0000-4000-8000-00000000000b"

# The shape the platform sends (WALinuxAgent's multi-config test data has the same):
# ExtensionRuntimeSettings @seqNo @name @state under the handler's PluginSettings entry,
# and MultipleExtensionsPerHandler among the RequiredFeatures.
REAL_SHAPE = f"""<?xml version="1.0" encoding="utf-8"?>
<Extensions version="1.0.0.0" goalStateIncarnation="4">
<GuestAgentExtension><GAFamilies/></GuestAgentExtension>
<RequiredFeatures><RequiredFeature><Name>MultipleExtensionsPerHandler</Name></RequiredFeature></RequiredFeatures>
<StatusUploadBlob statusBlobType="BlockBlob">https://s.blob/vm.status?sig=abc</StatusUploadBlob>
<Plugins>
  <Plugin name="{RUN_COMMAND}" version="1.3" location="https://s.blob/m.xml" state="enabled"
          autoUpgrade="true" failoverlocation="https://f.blob/m.xml" runAsStartupTask="false"
          isJson="true" useExactVersion="true" />
</Plugins>
<PluginSettings>
  <Plugin name="{RUN_COMMAND}" version="1.3">
    <ExtensionRuntimeSettings seqNo="2" name="firstRunCommand" state="enabled">{{
  "runtimeSettings": [{{"handlerSettings": {{"publicSettings": {{"source": {{"script": "echo 1"}}}}}}}}]
}}</ExtensionRuntimeSettings>
    <ExtensionRuntimeSettings seqNo="0" name="second_Run-Command.2" state="disabled">{{
  "runtimeSettings": [{{"handlerSettings": {{"publicSettings": {{}}}}}}]
}}</ExtensionRuntimeSettings>
  </Plugin>
</PluginSettings>
<InVMGoalStateMetaData inSvdSeqNo="3" createdOnTicks="637415129555522297" />
</Extensions>
""".encode()


def test_the_goal_model_carries_each_named_extension_of_a_multi_config_handler() -> None:
    goal = parse_extensions_config(REAL_SHAPE)
    assert goal.unsupported_features() == []
    (plugin,) = goal.plugins
    assert plugin.refusal is None
    assert plugin.multi_config
    shown = [(e.name, e.seq_no, e.state) for e in plugin.extensions]
    assert shown == [("firstRunCommand", 2, "enabled"), ("second_Run-Command.2", 0, "disabled")]
    assert '"script": "echo 1"' in (plugin.extensions[0].settings or "")


def test_a_named_extension_that_could_name_another_file_makes_its_plugin_invalid_alone() -> None:
    for bad in ("../x", ".hidden", "a/b", "", "x" * 129):
        text = REAL_SHAPE.replace(b'name="firstRunCommand"', f'name="{bad}"'.encode())
        (plugin,) = parse_extensions_config(text).plugins
        assert plugin.invalid is not None and "ExtensionRuntimeSettings@name" in plugin.invalid
    twice = REAL_SHAPE.replace(b'name="second_Run-Command.2"', b'name="FIRSTRunCommand"')
    (plugin,) = parse_extensions_config(twice).plugins
    assert plugin.invalid is not None and "listed twice" in plugin.invalid


def test_a_multi_config_handler_runs_after_every_handler_any_of_its_extensions_depends_on() -> (
    None
):
    """DependsOn comes once per named extension (@name); the extensions share a handler and
    run together, so the handler takes the highest level and every handler named."""
    depends = f"""<Plugin name="{RUN_COMMAND}" version="1.3">
    <DependsOn dependencyLevel="3" name="secondRunCommand">
      <DependsOnExtension extension="firstRunCommand" handler="{RUN_COMMAND}" />
      <DependsOnExtension handler="Microsoft.Compute.CustomScriptExtension" />
    </DependsOn>
    <DependsOn dependencyLevel="4" name="thirdRunCommand">
      <DependsOnExtension extension="secondRunCommand" handler="{RUN_COMMAND}" />
      <DependsOnExtension handler="Microsoft.Compute.VMAccessAgent" />
    </DependsOn>"""
    text = REAL_SHAPE.replace(
        f'<Plugin name="{RUN_COMMAND}" version="1.3">'.encode(), depends.encode()
    )
    (plugin,) = parse_extensions_config(text).plugins
    assert plugin.refusal is None and plugin.multi_config
    assert plugin.dependency_level == 4
    assert plugin.depends_on == (
        "Microsoft.Compute.CustomScriptExtension",
        "Microsoft.Compute.VMAccessAgent",
    )


# -- against the simulated fabric ---------------------------------------------------------


def _publish(ext: SimulatedExtensions, *named: NamedSpec) -> None:
    ext.publish(RUN_COMMAND, "1.3.2", extension_zip(RUN_COMMAND, "1.3.2", style="runcommand"))
    ext.publish(OTHER, "1.0.0", extension_zip(OTHER, "1.0.0", style="sample"))
    ext.plugins = [PluginSpec(RUN_COMMAND, "1.3", named=list(named)), PluginSpec(OTHER, "1.0")]


def _set_boot_id(root: Path, boot_id: str) -> None:
    path = root / BOOT_ID
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{boot_id}\n")


def _calls(agent: Agent) -> list[tuple[str, str, str]]:
    """(operation, ConfigExtensionName as the handler saw it, ConfigSequenceNumber)."""
    return [
        (o["op"], o["env"].get("ConfigExtensionName", ""), o["env"]["ConfigSequenceNumber"])
        for o in agent.ops(RUN_COMMAND)
    ]


def _entries(ext: SimulatedExtensions, handler: str = RUN_COMMAND) -> dict[str, dict[str, Any]]:
    """The handler's handlerAggregateStatus entries by runtimeSettingsStatus.extensionName."""
    document = ext.status_document()
    entries = document["aggregateStatus"]["handlerAggregateStatus"]
    return {
        e["runtimeSettingsStatus"].get("extensionName", ""): e
        for e in entries
        if e["handlerName"] == handler
    }


def _files(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for sub in ("config", "status")
        for p in (folder / sub).iterdir()
        if p.is_file()
    }


def test_two_named_extensions_run_with_their_own_name_settings_status_and_state(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    _publish(
        ext,
        NamedSpec("first", 1, public_settings={"enable": {"stdout": "first ran"}}),
        NamedSpec("second", 4, public_settings={"enable": {"stdout": "second ran"}}),
    )
    assert agent.once() == 0
    assert _calls(agent) == [
        ("install", "first", "1"),
        ("enable", "first", "1"),
        ("enable", "second", "4"),
    ]
    folder = agent.lib(FOLDER)
    assert {
        "config/first.1.settings",
        "config/second.4.settings",
        "config/first.HandlerState",
        "config/second.HandlerState",
        "status/first.1.status",
        "status/second.4.status",
    } <= _files(folder)
    assert (folder / "config/HandlerState").read_text() == "Enabled"
    assert (folder / "config/first.HandlerState").read_text() == "enabled"
    # The handler's own files (RunCommand keeps <name>.mrseq in its folder) are left alone.
    assert (folder / "first.mrseq").read_text() == "1"

    entries = _entries(ext)
    assert set(entries) == {"first", "second"}
    for name, seq_no in (("first", 1), ("second", 4)):
        runtime = entries[name]["runtimeSettingsStatus"]
        assert runtime["sequenceNumber"] == seq_no
        status = runtime["settingsStatus"]["status"]
        assert (status["status"], status["formattedMessage"]["message"]) == (
            "success",
            f"enable done for seqNo {seq_no}",
        )
        assert entries[name]["status"] == "Ready"
    assert {"Key": "MultipleExtensionsPerHandler", "Value": "1.0"} in ext.status_document()[
        "supportedFeatures"
    ]
    # The single-config handler beside it is reported as before, with no extensionName.
    assert set(_entries(ext, OTHER)) == {""}


def test_a_new_seq_no_for_one_named_extension_enables_that_one_only(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 1))
    assert agent.once() == 0
    ext.plugins[0].named = [NamedSpec("first", 1), NamedSpec("second", 2)]
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert _calls(agent)[3:] == [("enable", "second", "2")]
    entries = _entries(ext)
    assert entries["first"]["runtimeSettingsStatus"]["sequenceNumber"] == 1
    assert entries["second"]["runtimeSettingsStatus"]["sequenceNumber"] == 2


def test_a_named_extension_removed_from_the_goal_is_disabled_alone_and_the_other_keeps_running(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 3))
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        ext.plugins[0].named = [NamedSpec("first", 1)]  # "second" is deleted
        fabric.spec.incarnation += 1
        assert runner.round().exit_code == 0
        assert _calls(agent)[3:] == [("disable", "second", "3")]
        folder = agent.lib(FOLDER)
        assert not any(
            name.startswith(("config/second.", "status/second.")) for name in _files(folder)
        )
        assert (folder / "config/first.HandlerState").read_text() == "enabled"
        assert (folder / "config/HandlerState").read_text() == "Enabled"
        assert set(_entries(ext)) == {"first"}
        uploads = len(ext.status_log)
        assert runner.round().exit_code == 0  # an idle round: no command, status still sent
    assert len(_calls(agent)) == 4
    assert len(ext.status_log) == uploads + 1
    entry = _entries(ext)["first"]
    assert entry["status"] == "Ready"
    assert entry["runtimeSettingsStatus"]["settingsStatus"]["status"]["status"] == "success"


def test_a_named_extension_set_to_disabled_is_removed_like_a_deleted_one(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 1))
    assert agent.once() == 0
    ext.plugins[0].named = [NamedSpec("first", 1), NamedSpec("second", 1, state="disabled")]
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert _calls(agent)[3:] == [("disable", "second", "1")]
    assert not (agent.lib(FOLDER) / "config/second.HandlerState").exists()
    assert set(_entries(ext)) == {"first"}


def test_uninstalling_a_multi_config_handler_disables_each_extension_then_uninstalls(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 2))
    assert agent.once() == 0
    ext.plugins[0].state = "uninstall"
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert sorted(_calls(agent)[3:-1]) == [("disable", "first", "1"), ("disable", "second", "2")]
    assert _calls(agent)[-1][0] == "uninstall"
    assert not agent.lib(FOLDER).exists()
    assert _entries(ext) == {}


def test_one_named_extensions_failed_enable_fails_alone_and_stands_until_the_next_boot(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    _publish(
        ext,
        NamedSpec("first", 1, public_settings={"enable": {"exit": 2}}),
        NamedSpec("second", 1),
    )
    _set_boot_id(agent.root, FIRST_BOOT)
    assert agent.once() == 1
    assert agent.once() == 1  # the same goal state, the same boot: the failure stands
    entries = _entries(ext)
    assert entries["first"]["status"] == "NotReady"
    assert "enable failed with exit code 2" in entries["first"]["formattedMessage"]["message"]
    assert entries["second"]["status"] == "Ready"
    assert _calls(agent) == [
        ("install", "first", "1"),
        ("enable", "first", "1"),
        ("enable", "second", "1"),
    ]
    _set_boot_id(agent.root, SECOND_BOOT)  # rebooted: the failed one is tried once more
    assert agent.once() == 1
    assert agent.once() == 1
    assert _calls(agent)[3:] == [("enable", "first", "1")]


def test_saved_outcomes_stand_per_named_extension() -> None:
    """Within one incarnation, what stands is decided per (handler, extension name): a
    named extension whose request changed runs, the others' outcomes stand (a failure
    only in the boot it was recorded in)."""
    # Imported here: the rest of this file runs (and fails) on an azprov without them.
    from azprov.extensions.goal import Plugin
    from azprov.extensions.memory import Memory
    from azprov.extensions.named_extensions import NamedExtension
    from azprov.extensions.outcome import Outcome

    def plugin(second_seq_no: int) -> Plugin:
        named = (
            NamedExtension("first", 1, "enabled"),
            NamedExtension("second", second_seq_no, "enabled"),
        )
        return Plugin(RUN_COMMAND, "1.3", "enabled", (), multi_config=True, extensions=named)

    failed = Outcome(RUN_COMMAND, "1.3.2", 1, "Enable", "enable failed", extension="first")
    fine = Outcome(RUN_COMMAND, "1.3.2", 1, "Enable", extension="second")
    whole = Outcome(
        RUN_COMMAND,
        "1.3.2",
        0,
        "Enable",
        "first: enable failed",
        named=(failed, fine),
        multi_config=True,
    )
    memory = Memory()
    memory.remember("7", plugin(1), whole, FIRST_BOOT)
    memory = Memory.from_bytes(memory._text().encode())  # as the next process reads it
    assert memory.outcome_for("7", plugin(1), FIRST_BOOT) == whole
    assert memory.outcome_for("7", plugin(2), FIRST_BOOT) is None
    assert memory.standing_extensions("7", plugin(2), FIRST_BOOT) == {"first": failed}
    assert memory.standing_extensions("7", plugin(1), SECOND_BOOT) == {"second": fine}
    assert memory.standing_extensions("8", plugin(1), FIRST_BOOT) == {}


def test_a_multi_config_goal_for_a_handler_that_does_not_declare_support_fails_alone(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish(RUN_COMMAND, "1.3.2", extension_zip(RUN_COMMAND, "1.3.2", style="script"))
    ext.publish(OTHER, "1.0.0", extension_zip(OTHER, "1.0.0", style="sample"))
    ext.plugins = [
        PluginSpec(RUN_COMMAND, "1.3", named=[NamedSpec("first", 1)]),
        PluginSpec(OTHER, "1.0"),
    ]
    assert agent.once() == 1
    assert [o["op"] for o in agent.ops(RUN_COMMAND)] == []
    entry = _entries(ext)["first"]
    assert "supportsMultipleExtensions" in entry["formattedMessage"]["message"]
    assert set(_entries(ext, OTHER)) == {""}


def test_a_new_version_disables_each_named_extension_on_the_old_and_enables_each_on_the_new(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 2))
    assert agent.once() == 0
    ext.publish(RUN_COMMAND, "1.4.0", extension_zip(RUN_COMMAND, "1.4.0", style="runcommand"))
    ext.plugins[0].version = "1.4"
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    calls = [
        (o["op"], o["env"].get("ConfigExtensionName", ""), o["version"])
        for o in agent.ops(RUN_COMMAND)
    ]
    assert calls[3:] == [
        ("disable", "first", "1.3.2"),
        ("disable", "second", "1.3.2"),
        ("update", "first", "1.4.0"),
        ("uninstall", "first", "1.3.2"),
        ("install", "first", "1.4.0"),
        ("enable", "first", "1.4.0"),
        ("enable", "second", "1.4.0"),
    ]
    assert not agent.lib(FOLDER).exists()
    entries = _entries(ext)
    assert {name: e["handlerVersion"] for name, e in entries.items()} == {
        "first": "1.4.0",
        "second": "1.4.0",
    }


def test_a_named_extensions_protected_settings_reach_it_and_nothing_else(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    secret = "Mc-Secret-7f3a9b"
    fabric.spec.certificates = True
    _publish(ext, NamedSpec("first", 1, protected_settings={"password": secret}))
    assert agent.once() == 0
    decrypted = agent.lib(FOLDER, "decrypted.json").read_text()
    assert secret in decrypted
    settings = agent.lib(FOLDER, "config", "first.1.settings")
    assert secret not in settings.read_text() and settings.stat().st_mode & 0o777 == 0o600
    assert secret not in ext.blobs["/status/vm.status"].decode()
    assert _entries(ext)["first"]["status"] == "Ready"


def test_an_enable_that_goes_on_in_the_background_is_reported_transitioning_then_success(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    """RunCommand v2's shim starts enable in the background and returns at once: the
    status file comes later, and later rounds report it without running enable again."""
    package = extension_zip(RUN_COMMAND, "1.3.2", style="runcommand", detach_enable=True)
    ext.publish(RUN_COMMAND, "1.3.2", package)
    slow = {"enable": {"sleep": 1.5}}
    ext.plugins = [
        PluginSpec(
            RUN_COMMAND,
            "1.3",
            named=[NamedSpec("first", 1, public_settings=slow), NamedSpec("second", 1)],
        )
    ]
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        entries = _entries(ext)
        first = entries["first"]["runtimeSettingsStatus"]["settingsStatus"]["status"]
        assert first["status"] == "transitioning"
        status = agent.lib(FOLDER, "status", "first.1.status")
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole before the handler exits
        assert runner.round().exit_code == 0
    assert [c[0] for c in _calls(agent)] == ["install", "enable", "enable"]
    for name in ("first", "second"):
        status = _entries(ext)[name]["runtimeSettingsStatus"]["settingsStatus"]["status"]
        assert status["status"] == "success"


def test_a_link_left_for_one_named_extensions_status_is_that_ones_error_alone(
    ext: SimulatedExtensions, agent: Agent, tmp_path: Path
) -> None:
    """The handler's folder is its own: a status file it leaves as a link to a file
    outside is never followed; that named extension reports the refusal, the other its
    status as usual."""
    outside = tmp_path / "outside.json"
    outside.write_text('[{"status": {"status": "success", "secret": "not for the status"}}]')
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 1))
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        status = agent.lib(FOLDER, "status", "first.1.status")
        status.unlink()
        status.symlink_to(outside)
        runner.round()
    entries = _entries(ext)
    first = entries["first"]["runtimeSettingsStatus"]["settingsStatus"]["status"]
    assert first["status"] == "error" and "first.1.status" in first["formattedMessage"]["message"]
    assert "not for the status" not in ext.blobs["/status/vm.status"].decode()
    second = entries["second"]["runtimeSettingsStatus"]["settingsStatus"]["status"]
    assert second["status"] == "success"


def test_a_link_left_as_a_named_extensions_state_file_is_removed_not_followed(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric, tmp_path: Path
) -> None:
    """A state file the handler left as a link (to a file outside, here) names no
    extension azprov can disable: the link itself goes, what it points to stays, and the
    named extensions in the goal run as asked."""
    outside = tmp_path / "outside-state"
    outside.write_text("enabled")
    _publish(ext, NamedSpec("first", 1))
    assert agent.once() == 0
    planted = agent.lib(FOLDER, "config", "planted.HandlerState")
    planted.symlink_to(outside)
    ext.plugins[0].named = [NamedSpec("first", 2)]
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert not planted.is_symlink() and outside.read_text() == "enabled"
    assert _calls(agent)[2:] == [("enable", "first", "2")]
    assert _entries(ext)["first"]["status"] == "Ready"


def test_when_every_named_extension_is_removed_the_handler_stays_installed_until_uninstall(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext, NamedSpec("first", 1), NamedSpec("second", 1))
    assert agent.once() == 0
    ext.plugins[0].named = []
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert sorted(_calls(agent)[3:]) == [("disable", "first", "1"), ("disable", "second", "1")]
    folder = agent.lib(FOLDER)
    assert (folder / "config/HandlerState").read_text() == "Installed"
    assert not any(name.endswith((".settings", ".status")) for name in _files(folder))
    assert _entries(ext) == {}
    assert set(_entries(ext, OTHER)) == {""}  # the status upload goes on
    ext.plugins[0].state = "uninstall"
    fabric.spec.incarnation += 1
    assert agent.once() == 0
    assert _calls(agent)[-1][0] == "uninstall"
    assert not folder.exists()
