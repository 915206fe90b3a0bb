"""The simulated HostGAPlugin's vmSettings (reference §7): 404 on a host without Fast Track
(the default), 200 with an ETag once published, 304 for the current ETag, 410 for an
earlier container; publishing leaves the WireServer's goal state as it was."""

from __future__ import annotations

import json

import httpx

from azprov.simulator import SimulatedFabric
from azprov.simulator.documents import role_config_name
from tests.extensions.fast_track import freeze_extensions_config, publish_vm_settings
from tests.extensions.simulated import PluginSpec, SimulatedExtensions


def _get(fabric: SimulatedFabric, etag: str = "", container: str = "") -> httpx.Response:
    headers = {
        "x-ms-version": "2015-09-01",
        "x-ms-containerid": container or fabric.spec.container_id,
        "x-ms-host-config-name": role_config_name(fabric.spec),
    }
    if etag:
        headers["If-None-Match"] = etag
    return httpx.get(f"{fabric.hostplugin.base}/vmSettings", headers=headers)


def test_a_host_without_fast_track_answers_vm_settings_404_after_checking_the_version(
    fabric: SimulatedFabric,
) -> None:
    assert _get(fabric).status_code == 404
    unversioned = httpx.get(f"{fabric.hostplugin.base}/vmSettings")
    assert unversioned.status_code == 400
    assert b"MissingOrInvalidVersionHeader" in unversioned.content


def test_published_vm_settings_come_with_an_etag_then_304_until_published_again(
    ext: SimulatedExtensions, fabric: SimulatedFabric
) -> None:
    ext.plugins = [PluginSpec("Fast.One", "1.0", seq_no=1, public_settings={"a": 1})]
    etag = publish_vm_settings(ext)
    reply = _get(fabric)
    assert reply.status_code == 200 and reply.headers["ETag"] == etag
    document = json.loads(reply.content)
    assert document["extensionGoalStatesSource"] == "FastTrack"
    (entry,) = document["extensionGoalStates"]
    assert entry["settingsSeqNo"] == 1
    assert json.loads(entry["settings"][0]["publicSettings"]) == {"a": 1}

    unchanged = _get(fabric, etag)
    assert (unchanged.status_code, unchanged.content) == (304, b"")

    again = publish_vm_settings(ext)
    assert again != etag
    assert _get(fabric, etag).status_code == 200

    fabric.withdraw_vm_settings()
    assert _get(fabric, again).status_code == 404


def test_vm_settings_for_an_earlier_container_are_gone(
    ext: SimulatedExtensions, fabric: SimulatedFabric
) -> None:
    publish_vm_settings(ext)
    old = fabric.spec.container_id
    fabric.move_container()
    assert _get(fabric, container=old).status_code == 410
    assert _get(fabric).status_code == 200


def test_publishing_through_vm_settings_leaves_the_wireserver_goal_state_as_it_was(
    ext: SimulatedExtensions, fabric: SimulatedFabric
) -> None:
    ext.plugins = [PluginSpec("Fast.One", "1.0", seq_no=1)]
    frozen = freeze_extensions_config(ext)
    incarnation = fabric.spec.incarnation
    ext.plugins[0].seq_no = 2
    publish_vm_settings(ext)
    assert fabric.spec.incarnation == incarnation
    url = (
        f"{fabric.wireserver.base}/machine/{fabric.spec.container_id}/{fabric.spec.role_name}"
        "?comp=config&type=extensionsConfig&incarnation=1"
    )
    served = httpx.get(url, headers={"x-ms-version": "2012-11-30"})
    assert served.content == frozen and b'seqNo="1"' in frozen
