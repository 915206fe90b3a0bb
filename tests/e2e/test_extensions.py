"""The extension runner in a real Debian 12 boot: the packaged unit, HostGAPlugin only.

One boot of the freshly built .deb with `azprov-extensions.service` enabled
(and nothing else configured but a 2 s poll). The host plays the platform
through the goal states of `extensions_scenario` while the guest runs:
1. two handlers shaped like published ones — one like VMAccess (noop
   install, `extension_shim.sh -c ./access.py -e`, a logger that truncates
   its stdout, `"code": "0"`) that creates a user from protected settings
   encrypted to a tenant certificate, one like Custom Script
   (`bin/custom-script-shim enable`, manifest in a sub-folder) that writes a file;
2. a new `seqNo` for the second one (new settings), then idle rounds;
3. the first one uninstalled;
4. a multi-config handler in RunCommand v2's shape with two named extensions,
   then one of them removed while the other keeps running;
5. Fast Track: the ExtensionsConfig stays where it is while vmSettings ask for
   one more handler, then for new settings of it, then idle rounds answered 304.
Storage is never reachable from the guest (its URLs point at an address the
emulated network drops): everything comes through the HostGAPlugin.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from azprov.simulator import SimulatedFabric, VmSpec
from tests.e2e.extensions_scenario import (
    ACCESS,
    FAST,
    FAST_CHANGE_IN_SVD,
    FAST_IN_SVD,
    IDLE_ROUNDS,
    RUN_COMMAND,
    SCRIPT,
    Scenario,
    entries,
    features,
    goal_status,
    named_entries,
    own,
)
from tests.e2e.image import BootFiles, build_image, systemctl
from tests.e2e.tools import built_package
from tests.e2e.vm import Boot, boot, vm_id_for
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import STATUS_SIG, PluginSpec, SimulatedExtensions

SMBIOS_UUID = "6b1e0c3a-7d2f-4e8a-9b1c-2d3e4f5a6b7c"
SPEC = VmSpec(
    vm_id=vm_id_for(SMBIOS_UUID),
    name="e2e-ext",
    computer_name="e2e-ext",
    role_name="_e2e-ext",
    incarnation=2,
    container_id="5d1f0b2a-6c1e-4c8e-8a7b-0e0f4d9b1a10",
    certificates=True,
)
GUEST_FILES = Path(__file__).resolve().parent / "guest-extensions"
# TEST-NET-1: never routed; under `restrict=on` its packets are dropped, so a
# direct storage request hangs as it does on most Azure VMs.
STORAGE = "http://192.0.2.10"
USER, PASSWORD = "e2e-access", "E2e-Ext-Passw0rd!"
RUN_COMMAND_FOLDER = f"/var/lib/waagent/{RUN_COMMAND}-1.3.2"
FIRST_INSTALL_GOAL, SEQ_NO_CHANGE_GOAL = 12.0, 8.0
RSS_OVER_FLOOR_KB = 3 * 1024  # issue 16: an idle runner holds <= the floor + 3 MB


def _customize(tree: Path) -> None:
    for source in sorted(GUEST_FILES.rglob("*")):
        if source.is_file():
            target = tree / source.relative_to(GUEST_FILES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    systemctl(tree, "enable", "azprov-extensions.service")


@pytest.fixture(scope="module")
def ext_boot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Boot, Scenario]:
    workdir = tmp_path_factory.mktemp("e2e-ext")
    image: BootFiles = build_image(workdir, built_package("deb"), customize=_customize)
    disk = image.copy_disk(workdir / "ext.img")
    holder: dict[str, Any] = {}

    def prepare(fabric: SimulatedFabric) -> None:
        ext = SimulatedExtensions(fabric, workdir / "simulator", storage_base=STORAGE).start()
        ext.publish(ACCESS, "1.5.0", extension_zip(ACCESS, "1.5.0", style="access"))
        ext.publish(SCRIPT, "2.1.0", extension_zip(SCRIPT, "2.1.0", style="script"))
        ext.publish(RUN_COMMAND, "1.3.2", extension_zip(RUN_COMMAND, "1.3.2", style="runcommand"))
        ext.publish(FAST, "1.0.0", extension_zip(FAST, "1.0.0", style="sample"))
        ext.plugins = [
            PluginSpec(
                ACCESS,
                "1.5",
                seq_no=0,
                public_settings={"enable": {"create_user": True}},
                protected_settings={"username": USER, "password": PASSWORD},
            ),
            PluginSpec(
                SCRIPT,
                "2.1",
                seq_no=0,
                public_settings={"enable": {"files": {"/etc/e2e-custom-script": "seq 0\n"}}},
            ),
        ]
        ext.tenant  # the tenant certificate, made before the clock starts  # noqa: B018
        scenario = Scenario(fabric, ext)
        scenario.start()
        holder["ext"], holder["scenario"] = ext, scenario

    try:
        result = boot(image, disk, SPEC, SMBIOS_UUID, workdir, name="ext", prepare=prepare)
    finally:
        if "ext" in holder:
            holder["ext"].stop()
    return result, holder["scenario"]


def _context(result: Boot, scenario: Scenario) -> str:
    assert scenario.error is None, f"{scenario.error}\n{result.describe()}"
    return result.describe()


def _ops(result: Boot) -> list[dict[str, Any]]:
    """Every handler command the guest ran, in order within each handler's log."""
    lines = result.sections.get("ops", "").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _ops_at_host(result: Boot, ops: list[dict[str, Any]]) -> list[float]:
    """When each command ran, as host time.monotonic(): the guest's wall clock (what the
    handler records) through the probe's (wall, CLOCK_MONOTONIC) pair."""
    wall, mono_us = result.probe["ext_clock"].split()
    return [result.guest_to_host(int((o["at"] - float(wall)) * 1e6) + int(mono_us)) for o in ops]


def test_handlers_run_through_the_hostgaplugin_and_report_success(
    ext_boot: tuple[Boot, Scenario],
) -> None:
    result, scenario = ext_boot
    context = _context(result, scenario)
    # Their effects on the machine.
    assert result.probe.get("ext_user") == f"{USER}:/home/{USER}:/bin/bash", context
    assert result.probe.get("ext_user_hash") == "$", context
    assert result.probe.get("ext_script_file") == "seq 1", context
    assert result.probe.get("ext_active") == "active", context
    # The tenant certificate and its key, root's alone; the folder too.
    lines = result.sections.get("certificates", "").splitlines()
    assert lines[0] == "700 root /var/lib/waagent", context
    thumbprint = scenario.ext.tenant.thumbprint
    assert f"600 root /var/lib/waagent/{thumbprint}.crt" in lines, context
    assert f"600 root /var/lib/waagent/{thumbprint}.prv" in lines, context
    assert result.sections.get("memory", "").strip() == "600 root /var/lib/azprov/extensions.json"
    # The status the fabric received: Ready, success, the extension's own message.
    first = entries(scenario.documents["first"])
    assert first[ACCESS]["status"] == "Ready", context
    assert own(first[ACCESS])["formattedMessage"]["message"] == "enable done for seqNo 0"
    assert own(first[SCRIPT])["formattedMessage"]["message"] == "enable done for seqNo 0"
    assert scenario.documents["first"]["aggregateStatus"]["guestAgentStatus"]["status"] == "Ready"
    # Storage was never reached: every artifact came through the HostGAPlugin.
    assert result.fabric.requests_to("storage") == [], context
    assert result.fabric.requests_to("hostplugin", "/extensionArtifact"), context
    # Secrets stayed secret.
    everything = result.console + "\n".join(result.sections.values())
    for document in [*scenario.documents.values()]:
        everything += repr(document)
    for secret in (PASSWORD, STATUS_SIG, "PRIVATE KEY"):
        assert secret not in everything, secret


def test_a_new_seq_no_runs_enable_once_and_an_unchanged_goal_runs_nothing(
    ext_boot: tuple[Boot, Scenario],
) -> None:
    result, scenario = ext_boot
    context = _context(result, scenario)
    done = [(o["op"], o["seq"], o["style"]) for o in _ops(result)]
    assert [d for d in done if d[2] in ("access", "script")] == [
        ("enable", "0", "access"),  # its install is extension_noop.sh
        ("install", "0", "script"),
        ("enable", "0", "script"),
        ("enable", "1", "script"),  # and never again, whichever source asked for it
    ], context
    # Idle rounds: the goal state, vmSettings (the Fabric's, unchanged: 304) and the
    # status upload, nothing else.
    assert scenario.idle_requests, context
    for line in scenario.idle_requests:
        assert (
            "comp=goalstate" in line
            or "PUT /status" in line
            or "/e2e/" in line
            or ("GET /vmSettings" in line and line.endswith(" 304"))
        ), f"{line}\n{context}"
    # The uninstalled handler is gone from disk and from the status.
    assert f"{ACCESS}-1.5.0" not in result.sections.get("waagent", ""), context
    assert ACCESS not in entries(scenario.documents["uninstall"]), context


def test_a_multi_config_handler_runs_two_named_extensions_and_removes_one_alone(
    ext_boot: tuple[Boot, Scenario],
) -> None:
    result, scenario = ext_boot
    context = _context(result, scenario)
    calls = [
        (o["op"], o["env"].get("ConfigExtensionName", ""), o["env"]["ConfigSequenceNumber"])
        for o in _ops(result)
        if o["style"] == "runcommand"
    ]
    assert calls == [
        ("install", "first", "1"),
        ("enable", "first", "1"),
        ("enable", "second", "4"),
        ("disable", "first", "1"),  # "second" runs on, untouched
    ], context
    both = named_entries(scenario.documents["multi"])
    assert set(both) == {"first", "second"}, context
    assert own(both["first"])["formattedMessage"]["message"] == "enable done for seqNo 1"
    assert own(both["second"])["formattedMessage"]["message"] == "enable done for seqNo 4"
    assert "MultipleExtensionsPerHandler" in features(scenario.documents["multi"]), context
    # After the removal, and still at the end of the run: only "second".
    for phase in ("multi_removed", "fast_change"):
        assert set(named_entries(scenario.documents[phase])) == {"second"}, (phase, context)
    # Each enable saw its own settings; the removed one's files are gone, the other's stay.
    assert result.probe.get("ext_run_first") == "first 1", context
    assert result.probe.get("ext_run_second") == "second 4", context
    files = result.sections.get("runcommand", "").split()
    assert "config/second.4.settings" in files and "config/second.HandlerState" in files, context
    assert "status/second.4.status" in files, context
    assert not [f for f in files if f.split("/")[-1].startswith("first.")], context


def test_a_handler_only_in_vm_settings_runs_and_takes_a_settings_change(
    ext_boot: tuple[Boot, Scenario],
) -> None:
    result, scenario = ext_boot
    context = _context(result, scenario)
    calls = [(o["op"], o["seq"]) for o in _ops(result) if o["style"] == "sample"]
    assert calls == [("install", "0"), ("enable", "0"), ("enable", "1")], context
    assert result.probe.get("ext_fast_file") == "seq 1", context
    # The WireServer never asked for it: its ExtensionsConfig stayed at the old goal state.
    assert FAST.encode() not in scenario.frozen_config, context
    assert result.fabric.spec.incarnation == scenario.incarnations["multi_removed"], context
    configs = [r for r in result.fabric.requests if "type=extensionsConfig" in r.path]
    assert all(r.at < scenario.changed["fast"] for r in configs), context
    for phase, in_svd in (("fast", FAST_IN_SVD), ("fast_change", FAST_CHANGE_IN_SVD)):
        document = scenario.documents[phase]
        assert "FastTrack" in features(document), (phase, context)
        goal = goal_status(document)
        assert (goal["inSvdSeqNo"], goal["status"], goal["code"]) == (in_svd, "Success", 0)
        # What the ExtensionsConfig still asks for runs on: nothing of it ran again.
        assert entries(document)[SCRIPT]["runtimeSettingsStatus"]["sequenceNumber"] == 1


def test_settings_change_to_success_and_idle_rounds_with_vm_settings_answering_304(
    ext_boot: tuple[Boot, Scenario],
) -> None:
    result, scenario = ext_boot
    context = _context(result, scenario)
    first = scenario.marks["first"] - scenario.config_fetched("first")
    wire_fetch = scenario.marks["seq_no"] - scenario.config_fetched("seq_no")
    wire_change = scenario.marks["seq_no"] - scenario.changed["seq_no"]
    fast_fetch = scenario.marks["fast_change"] - scenario.vm_settings_fetched("fast_change")
    fast_change = scenario.marks["fast_change"] - scenario.changed["fast_change"]
    # Idle rounds while vmSettings answer 304.
    idle = scenario.fast_idle
    began, ended = scenario.fast_idle_window
    ops = _ops(result)
    timed = list(zip(ops, _ops_at_host(result, ops)))
    commands = [o for o, at in timed if began <= at <= ended]
    # The clock mapping holds: vmSettings' new settings ran between their change and success.
    (fast_enable,) = [
        at for o, at in timed if (o["style"], o["op"], o["seq"]) == ("sample", "enable", "1")
    ]
    assert scenario.changed["fast_change"] < fast_enable < scenario.marks["fast_change"], context
    vm_settings = [r.status for r in idle if r.route == "/vmSettings"]
    artifacts = [r for r in idle if r.service == "storage" or r.route == "/extensionArtifact"]
    runner_kb = int(result.probe.get("ext_runner_rss_kb") or 0)
    floor_kb = int(result.probe.get("ext_floor_rss_kb") or 0)
    peak_kb = int(result.probe.get("ext_runner_hwm_kb") or 0)
    print(
        f"\nExtensionsConfig fetch -> status success: first install {first:.2f} s "
        f"(goal <= {FIRST_INSTALL_GOAL:g} s)"
        f"\nsettings change -> status success: through ExtensionsConfig (new incarnation) "
        f"{wire_change:.2f} s ({wire_fetch:.2f} s from its fetch), through vmSettings "
        f"{fast_change:.2f} s ({fast_fetch:.2f} s from its fetch; goal <= "
        f"{SEQ_NO_CHANGE_GOAL:g} s from the fetch)"
        f"\nidle rounds with vmSettings answering 304 ({ended - began:.1f} s, "
        f"{IDLE_ROUNDS} status uploads): {len(idle)} requests, vmSettings answers "
        f"{vm_settings}, {scenario.artifact_bytes(idle)} bytes of package or manifest "
        f"({len(artifacts)} requests), {len(commands)} commands"
        f"\nrunner ({result.probe.get('ext_runner_cmdline', '?').strip()}) RSS "
        f"{runner_kb / 1024:.1f} MB (peak {peak_kb / 1024:.1f} MB) vs floor "
        f"{floor_kb / 1024:.1f} MB: {(runner_kb - floor_kb) / 1024:+.1f} MB "
        f"(goal <= +{RSS_OVER_FLOOR_KB / 1024:g} MB)"
    )
    assert first <= FIRST_INSTALL_GOAL, context
    assert wire_fetch <= SEQ_NO_CHANGE_GOAL, context
    assert fast_fetch <= SEQ_NO_CHANGE_GOAL, context
    assert vm_settings and set(vm_settings) == {304}, context
    assert artifacts == [] and commands == [], context
    for r in idle:  # a goal state, a vmSettings 304 and a status upload a round
        assert (
            "comp=goalstate" in r.path
            or (r.method, r.route) in (("GET", "/vmSettings"), ("PUT", "/status"))
            or r.route.startswith("/e2e/")
        ), f"{r.service} {r.method} {r.path}\n{context}"
    assert runner_kb and floor_kb, context
    assert runner_kb <= floor_kb + RSS_OVER_FLOOR_KB, context
