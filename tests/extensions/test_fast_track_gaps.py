"""Fast Track (reference §7), three rules beyond the first cut: a host that answered 404
is asked again after hours, not never; the goal in effect is remembered across a restart,
so an older ExtensionsConfig does not replace it then either; and the manifests and
packages of a Fast Track goal are fetched with x-ms-verify-from-artifacts-blob, those of an
ExtensionsConfig goal without it."""

from __future__ import annotations

import json

import pytest

import azprov.extensions.fast_track as fast_track_module
from azprov.extensions.memory import MEMORY_FILE
from azprov.simulator import Answer, SimulatedFabric
from azprov.simulator.service import Request
from tests.extensions.conftest import Agent
from tests.extensions.fast_track import publish_vm_settings, ticks
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Fast.Access"
VERIFY = "x-ms-verify-from-artifacts-blob"
SIX_HOURS = 6 * 3600.0


def _publish_handler(ext: SimulatedExtensions) -> None:
    ext.publish(NAME, "1.5.0", extension_zip(NAME, "1.5.0", style="access"))


def _created_on(ext: SimulatedExtensions, created: int) -> None:
    """The ExtensionsConfig says when it was made (InVMGoalStateMetaData@createdOnTicks)."""
    ext.rewrite_config = lambda text: text.replace(
        "<InVMGoalStateMetaData ", f'<InVMGoalStateMetaData createdOnTicks="{created}" '
    )


def _vm_settings_statuses(fabric: SimulatedFabric) -> list[int]:
    return [r.status for r in fabric.requests_to("hostplugin", "/vmSettings")]


def _manifest_fetches(fabric: SimulatedFabric) -> list[Request]:
    return [
        r
        for r in fabric.requests_to("hostplugin", "/extensionArtifact")
        if "/manifests/" in r.headers.get("x-ms-artifact-location", "")
    ]


def test_a_host_that_answered_404_is_asked_again_after_hours_and_not_in_between(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish_handler(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    now = [1000.0]
    with agent.runner() as runner:
        runner.fast_track.clock = lambda: now[0]
        assert runner.round().exit_code == 0
        assert _vm_settings_statuses(fabric) == [404]
        # The host gains Fast Track; rounds in between cost no request for it.
        publish_vm_settings(
            ext, created=ticks() + 10**9, plugins=[PluginSpec(NAME, "1.5", seq_no=7)]
        )
        for offset in (6.0, 3600.0, SIX_HOURS - 1):
            now[0] = 1000.0 + offset
            assert runner.round().exit_code == 0
        assert _vm_settings_statuses(fabric) == [404]
        now[0] = 1000.0 + SIX_HOURS
        assert runner.round().exit_code == 0
        assert _vm_settings_statuses(fabric) == [404, 200]
    assert [o["seq"] for o in agent.ops(NAME)] == ["1", "7"]


def test_the_404_recheck_interval_is_hours() -> None:
    assert getattr(fast_track_module, "NOT_SERVED_ASKED_AGAIN_SECONDS", None) == SIX_HOURS


@pytest.mark.parametrize(
    "unavailable",
    ["withdrawn", "502"],
    ids=["vmSettings withdrawn (404)", "vmSettings failing (502)"],
)
def test_an_older_extensions_config_does_not_replace_the_fast_track_goal_after_a_restart(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric, unavailable: str
) -> None:
    _publish_handler(ext)
    t1, t2 = ticks() - 10**9, ticks()
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    _created_on(ext, t1)
    etag = publish_vm_settings(ext, created=t2, plugins=[PluginSpec(NAME, "1.5", seq_no=5)])
    assert agent.once() == 0  # both new: the newer (vmSettings, T2) runs
    assert [o["seq"] for o in agent.ops(NAME)] == ["5"]
    # A restart that cannot read vmSettings, and a new incarnation made at T1 < T2.
    if unavailable == "withdrawn":
        fabric.withdraw_vm_settings()
    else:
        fabric.hostplugin.script([Answer(502, b"HostGAPlugin error")], "/vmSettings")
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=2)]
    fabric.new_incarnation()
    assert agent.once() == 0
    with agent.runner() as runner:  # a new runner object too
        assert runner.round().exit_code == 0
    assert [o["seq"] for o in agent.ops(NAME)] == ["5"]
    saved = json.loads((agent.root / MEMORY_FILE.lstrip("/")).read_text())
    assert (saved["goal_id"], saved["goal_created"]) == (f"etag_{etag}", t2)
    # A newer ExtensionsConfig (T3 > T2) still runs.
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=3)]
    _created_on(ext, ticks() + 10**9)
    fabric.new_incarnation()
    assert agent.once() == 0
    assert [o["seq"] for o in agent.ops(NAME)] == ["5", "3"]


def test_fast_track_manifests_and_packages_are_fetched_with_verify_from_artifacts_blob(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    """The header goes with every artifact of a Fast Track goal's handler through the
    HostGAPlugin (WALinuxAgent sends it with manifests and packages), and with none of an
    ExtensionsConfig goal's."""
    _publish_handler(ext)
    ext.plugins = [PluginSpec(NAME, "1.5", seq_no=1)]
    assert agent.once() == 0  # an ExtensionsConfig goal
    wire = fabric.requests_to("hostplugin", "/extensionArtifact")
    assert len(_manifest_fetches(fabric)) == 1 and len(wire) == 2  # a manifest, a package
    assert all(VERIFY not in r.headers for r in wire)
    ext.publish(NAME, "1.6.0", extension_zip(NAME, "1.6.0", style="access"))
    publish_vm_settings(ext, created=ticks() + 10**9, plugins=[PluginSpec(NAME, "1.6", seq_no=2)])
    assert agent.once() == 0  # a Fast Track goal
    fast = fabric.requests_to("hostplugin", "/extensionArtifact")[len(wire) :]
    assert len([r for r in fast if r in _manifest_fetches(fabric)]) == 1 and len(fast) == 2
    assert all(r.headers.get(VERIFY) == "true" for r in fast)
    assert agent.op_names(NAME)[-1] == "enable@1.6.0"
