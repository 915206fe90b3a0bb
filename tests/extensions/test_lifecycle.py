"""Handler lifecycle over real HTTP against the simulated fabric, with real subprocesses."""

from __future__ import annotations

import json
import stat
import time

from tests.extensions.conftest import Agent, enable_test_extension, handler_entries
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"
OTHER = "Sim.OtherExtension"


def _settings_status(document: dict, name: str = NAME) -> dict:
    return handler_entries(document)[name]["runtimeSettingsStatus"]["settingsStatus"]["status"]


def test_install_then_enable_and_success_status_through_the_hostplugin(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=3, public_settings={"k": "v"})]

    assert agent.once() == 0

    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "Ready"
    assert entry["handlerVersion"] == "1.0.0"
    assert entry["runtimeSettingsStatus"]["sequenceNumber"] == 3
    settings_status = entry["runtimeSettingsStatus"]["settingsStatus"]
    assert settings_status["timestampUTC"] == "2026-01-01T00:00:00Z"  # as the extension wrote it
    status = _settings_status(ext.status_document())
    assert status["status"] == "success"
    assert status["formattedMessage"]["message"] == "enable done for seqNo 3"
    assert ext.status_uploads == [("HostGAPlugin", "BlockBlob")]
    # Storage refused the direct tries; the package came through the HostGAPlugin.
    artifact = fabric.requests_to("hostplugin", "/extensionArtifact")
    assert [r.status for r in artifact] == [200, 200]
    assert artifact[0].headers["x-ms-containerid"] == fabric.spec.container_id
    assert artifact[0].headers["x-ms-host-config-name"].endswith(".xml")


def test_handler_folder_environment_and_command_context(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0", subfolder="meta/")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=0, public_settings={"k": "v"})]
    assert agent.once() == 0

    folder = agent.lib(f"{NAME}-1.0.0")
    environment = json.loads((folder / "HandlerEnvironment.json").read_text())[0]
    assert environment["name"] == NAME
    assert environment["handlerEnvironment"]["configFolder"] == str(folder / "config")
    assert environment["handlerEnvironment"]["logFolder"] == str(
        agent.root / "var/log/azure" / NAME
    )
    settings = folder / "config/0.settings"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    assert json.loads(settings.read_text())["runtimeSettings"][0]["handlerSettings"] == {
        "publicSettings": {"k": "v"}
    }
    assert (folder / "config/HandlerState").read_text() == "Enabled"
    assert (folder / "mrseq").read_text() == "0"
    # HandlerManifest.json from a sub-folder was copied to the handler root.
    assert (folder / "HandlerManifest.json").is_file()
    enable = agent.ops(NAME)[-1]
    assert enable["cwd"] == str(folder)
    assert enable["own_group"] is True
    assert enable["env"]["ConfigSequenceNumber"] == "0"
    assert enable["env"]["AZURE_GUEST_AGENT_EXTENSION_PATH"] == str(folder)
    assert enable["env"]["AZURE_GUEST_AGENT_EXTENSION_VERSION"] == "1.0.0"
    assert enable["env"]["AZURE_GUEST_AGENT_WIRE_PROTOCOL_ADDRESS"] == "127.0.0.1"
    logs = agent.root / "var/log/azure" / NAME
    assert "enable says hello" in (logs / "commands.stdout.log").read_text()
    assert "enable on stderr" in (logs / "commands.stderr.log").read_text()


def test_new_seq_no_enables_again_but_never_twice_for_one_seq_no(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    enable_test_extension(ext, agent, NAME)

    fabric.new_incarnation()  # same seqNo: nothing to run
    assert agent.once() == 0
    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]

    ext.plugins[0].seq_no = 2
    fabric.new_incarnation()
    assert agent.once() == 0
    assert [o["op"] + o["seq"] for o in agent.ops(NAME)] == ["install1", "enable1", "enable2"]
    assert _settings_status(ext.status_document())["formattedMessage"]["message"].endswith("2")

    assert agent.once() == 0  # a fresh process, same goal: still nothing to run
    assert len(agent.ops(NAME)) == 3
    assert len(ext.status_uploads) == 4  # but status is uploaded every round


def test_disable_then_uninstall(ext: SimulatedExtensions, agent: Agent, fabric) -> None:
    enable_test_extension(ext, agent, NAME)

    ext.plugins[0].state = "disabled"
    fabric.new_incarnation()
    assert agent.once() == 0
    assert agent.op_names(NAME)[-1] == "disable@1.0.0"
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    assert entry["formattedMessage"]["message"] == "Plugin disabled"
    assert (agent.lib(f"{NAME}-1.0.0") / "config/HandlerState").read_text() == "Installed"

    ext.plugins[0].state = "enabled"  # same seqNo, but it was disabled: enable again
    fabric.new_incarnation()
    assert agent.once() == 0
    assert agent.op_names(NAME)[-1] == "enable@1.0.0"

    ext.plugins[0].state = "uninstall"
    fabric.new_incarnation()
    assert agent.once() == 0
    assert agent.op_names(NAME)[-2:] == ["disable@1.0.0", "uninstall@1.0.0"]
    assert not agent.lib(f"{NAME}-1.0.0").exists()
    assert NAME not in handler_entries(ext.status_document())


def test_version_upgrade_sequence(ext: SimulatedExtensions, agent: Agent, fabric) -> None:
    enable_test_extension(ext, agent, NAME)

    ext.publish_test_extension(NAME, "1.0.1")
    ext.publish_test_extension(NAME, "2.0.0")  # not matched by "1.0"
    fabric.new_incarnation()
    assert agent.once() == 0

    assert agent.op_names(NAME) == [
        "install@1.0.0",
        "enable@1.0.0",
        "disable@1.0.0",
        "update@1.0.1",
        "uninstall@1.0.0",
        "install@1.0.1",
        "enable@1.0.1",
    ]
    update = agent.ops(NAME)[3]
    assert update["env"]["VERSION"] == "1.0.1"
    assert update["env"]["AZURE_GUEST_AGENT_UPDATING_FROM_VERSION"] == "1.0.0"
    assert not agent.lib(f"{NAME}-1.0.0").exists()
    assert handler_entries(ext.status_document())[NAME]["handlerVersion"] == "1.0.1"


def test_upgrade_without_install_when_the_manifest_says_so(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0.0", seq_no=1)]
    assert agent.once() == 0
    ext.publish_test_extension(NAME, "1.1.0", updateMode="UpdateWithoutInstall")
    ext.plugins[0].version = "1.1"
    fabric.new_incarnation()
    assert agent.once() == 0
    assert agent.op_names(NAME)[2:] == [
        "disable@1.0.0",
        "update@1.1.0",
        "uninstall@1.0.0",
        "enable@1.1.0",
    ]


def test_a_command_past_its_timeout_is_killed_with_its_children(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"child": True, "sleep": 60}})
    ]
    started = time.monotonic()
    assert agent.once(f"[extension {NAME}]\nenable_timeout = 2\n") == 1
    assert time.monotonic() - started < 20

    child = int(agent.lib(f"{NAME}.child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the command's child survived the timeout"
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    status = _settings_status(ext.status_document())
    assert status["status"] == "error"
    assert status["operation"] == "Enable"
    assert "enable timed out after 2 s and was killed" in status["formattedMessage"]["message"]
    assert "[stdout]\nenable says hello" in status["formattedMessage"]["message"]
    # Not recorded as handled: a new goal state or the next boot runs it again.
    assert not (agent.lib(f"{NAME}-1.0.0") / "mrseq").exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_failing_install_is_an_error_and_the_other_handler_still_runs(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension(OTHER, "3.1.4")
    ext.plugins = [
        PluginSpec(
            NAME,
            "1.0",
            seq_no=1,
            public_settings={"install": {"exit": 7, "stderr": "no apt lock"}},
        ),
        PluginSpec(OTHER, "3.1", seq_no=5),
    ]
    assert agent.once() == 1

    assert agent.op_names(NAME) == ["install@1.0.0"]
    assert agent.op_names(OTHER) == ["install@3.1.4", "enable@3.1.4"]
    entries = handler_entries(ext.status_document())
    assert entries[OTHER]["status"] == "Ready"
    failed = entries[NAME]
    assert failed["status"] == "NotReady"
    assert failed["formattedMessage"]["message"].startswith(
        "Install failed: install failed with exit code 7"
    )
    message = _settings_status(ext.status_document())["formattedMessage"]["message"]
    assert "[stderr]\nno apt lock" in message


def test_dependent_handler_is_skipped_when_its_dependency_fails(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [
        PluginSpec(OTHER, "1.0", seq_no=1, dependency_level=1, depends_on=(NAME,)),
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"exit": 1}}),
    ]
    assert agent.once() == 1
    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]
    assert agent.ops(OTHER) == []
    message = handler_entries(ext.status_document())[OTHER]["formattedMessage"]["message"]
    assert f"it depends on {NAME}, which failed" in message


def test_dependency_order_runs_lower_levels_first(ext: SimulatedExtensions, agent: Agent) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [
        PluginSpec(OTHER, "1.0", seq_no=1, dependency_level=1, depends_on=(NAME,)),
        PluginSpec(NAME, "1.0", seq_no=1),
    ]
    assert agent.once() == 0
    # Everything NAME did happened before OTHER (which depends on it) started.
    assert agent.ops(NAME)[-1]["at"] < agent.ops(OTHER)[0]["at"]


def test_a_failed_update_stops_the_upgrade_unless_the_manifest_says_continue(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    enable_test_extension(ext, agent, NAME)
    failing_update = {"update": {"exit": 4}}
    ext.publish_test_extension(NAME, "1.0.1")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=2, public_settings=failing_update)]
    fabric.new_incarnation()
    assert agent.once() == 1
    assert agent.op_names(NAME)[2:] == ["disable@1.0.0", "update@1.0.1"]
    assert (
        "Update failed: update failed with exit code 4"
        in (handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"])
    )

    ext.publish_test_extension(NAME, "1.0.2", continueOnUpdateFailure="true")
    fabric.new_incarnation()
    assert agent.once() == 0
    # 1.0.0 was the version in service (1.0.1 never installed): it is the one undone.
    assert agent.op_names(NAME)[4:] == [
        "update@1.0.2",
        "uninstall@1.0.0",
        "install@1.0.2",
        "enable@1.0.2",
    ]
    assert sorted(p.name for p in agent.lib().glob(f"{NAME}-*")) == [f"{NAME}-1.0.2"]
