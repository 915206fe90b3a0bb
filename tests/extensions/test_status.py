"""The status document and its upload: HostGAPlugin, direct BlockBlob and PageBlob, bad files."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from azprov.extensions.round_result import EXIT_EXTENSION_ERROR
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.simulated import STATUS_SIG, PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"


def test_no_plugins_still_uploads_status(ext: SimulatedExtensions, agent: Agent) -> None:
    ext.plugins = []
    assert agent.once() == 0
    document = ext.status_document()
    assert document["version"] == "1.1"
    assert document["aggregateStatus"]["guestAgentStatus"]["status"] == "Ready"
    assert document["aggregateStatus"]["handlerAggregateStatus"] == []
    assert ext.status_uploads == [("HostGAPlugin", "BlockBlob")]


@pytest.mark.parametrize("blob_type", ["BlockBlob", "PageBlob"])
def test_direct_upload_when_the_hostplugin_is_down(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric,
    blob_type: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    fabric.hostplugin.stop()
    ext.storage_reachable = True
    ext.status_blob_type = blob_type
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]

    assert agent.once() == 0

    kinds = ["BlockBlob"] if blob_type == "BlockBlob" else ["PageBlob create", "PageBlob page"]
    assert ext.status_uploads == [("storage", kind) for kind in kinds]
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"
    puts = [r for r in fabric.requests_to("storage") if r.method == "PUT"]
    assert all(
        r.headers["x-ms-version"] == "2014-02-14" and "x-ms-date" in r.headers for r in puts
    )
    if blob_type == "PageBlob":
        size = len(ext.blobs["/status/vm.status"])
        assert size % 512 == 0
        assert puts[0].headers["x-ms-blob-content-length"] == str(size)
        assert puts[1].headers["x-ms-range"] == f"bytes=0-{size - 1}"
    assert STATUS_SIG not in caplog.text


def test_page_blob_through_the_hostplugin(ext: SimulatedExtensions, agent: Agent, fabric) -> None:
    ext.status_blob_type = "PageBlob"
    assert agent.once() == 0
    assert ext.status_uploads == [
        ("HostGAPlugin", "PageBlob create"),
        ("HostGAPlugin", "PageBlob page"),
    ]
    put = json.loads(fabric.requests_to("hostplugin", "/status")[0].body)
    assert put["requestUri"] == ext.status_blob_url
    assert {"headerName": "x-ms-blob-type", "headerValue": "PageBlob"} in put["headers"]
    assert ext.status_document()["aggregateStatus"]["handlerAggregateStatus"] == []


def test_upload_failing_everywhere_is_a_failed_round(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    fabric.hostplugin.stop()  # and storage refuses direct access (403)
    assert agent.once() == 1
    assert "status upload failed: HostGAPlugin: not usable; storage:" in caplog.text
    assert "HTTP 403" in caplog.text
    assert STATUS_SIG not in caplog.text


def test_a_lasting_upload_failure_is_logged_once_and_its_end_too(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fabric.hostplugin.stop()
    with agent.runner() as runner:
        assert [runner.round().exit_code, runner.round().exit_code] == [1, 1]
        assert caplog.text.count("status upload failed") == 1
        ext.storage_reachable = True
        assert runner.round().exit_code == 0
    assert "status uploaded through storage again" in caplog.text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{not json", "1.status is malformed"),
        ('[{"status": {"status": "splendid"}}]', "status.status is 'splendid'"),
        ("[]", "1.status is malformed"),
        (
            "[" + '{"status": {"status": "success"}},' * 5000 + "{}]",
            "1.status is larger than 128 KB",
        ),
    ],
)
def test_bad_status_files_are_reported_as_errors_not_crashes(
    ext: SimulatedExtensions, agent: Agent, raw: str, expected: str
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"raw_status": raw}})
    ]
    assert agent.once() == EXIT_EXTENSION_ERROR  # the extension's own status is an error
    status = handler_entries(ext.status_document())[NAME]["runtimeSettingsStatus"]
    assert status["settingsStatus"]["status"]["status"] == "error"
    assert expected in status["settingsStatus"]["status"]["formattedMessage"]["message"]


def test_missing_status_file_is_transitioning_and_long_messages_are_cut(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    long_message = json.dumps(
        [
            {
                "status": {
                    "status": "warning",
                    "code": 3,
                    "formattedMessage": {"lang": "en-US", "message": "w" * 5000},
                }
            }
        ]
    )
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"raw_status": long_message}})
    ]
    assert agent.once() == EXIT_EXTENSION_ERROR  # a warning is not success either
    status = handler_entries(ext.status_document())[NAME]["runtimeSettingsStatus"][
        "settingsStatus"
    ]["status"]
    assert status["status"] == "warning" and status["code"] == 3
    assert len(status["formattedMessage"]["message"]) == 1024

    (agent.lib(f"{NAME}-1.0.0") / "status/1.status").unlink()
    assert agent.once() == 0  # transitioning
    status = handler_entries(ext.status_document())[NAME]["runtimeSettingsStatus"][
        "settingsStatus"
    ]["status"]
    assert status["status"] == "transitioning"


def test_unsupported_required_feature_fails_every_handler_but_status_is_uploaded(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    ext.required_features = ["SomeFeatureOfTomorrow"]
    assert agent.once() == 1
    assert agent.ops(NAME) == []
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert "requires unsupported feature(s): SomeFeatureOfTomorrow" in message


def test_no_extensions_config_means_nothing_to_run_or_report(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    fabric.spec.extensions_enabled = False
    assert agent.once() == 0
    assert ext.status_uploads == []
    assert not agent.lib().exists()


def test_a_multi_config_goal_for_a_single_config_handler_fails_alone(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension("Sim.Multi", "1.0.0")
    ext.plugins = [
        PluginSpec("Sim.Multi", "1.0", seq_no=1, multi_config=True),
        PluginSpec(NAME, "1.0", seq_no=1),
    ]
    assert agent.once() == 1
    assert agent.ops("Sim.Multi") == []
    entries = handler_entries(ext.status_document())
    assert entries[NAME]["status"] == "Ready"
    message = entries["Sim.Multi"]["formattedMessage"]["message"]
    assert "supportsMultipleExtensions" in message


def test_a_handler_reporting_a_heartbeat_is_ready_only_while_it_beats(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0", reportHeartbeat="true")
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"heartbeat": "Ready"}})
    ]
    assert agent.once() == 0
    entry = handler_entries(ext.status_document())[NAME]
    assert (entry["status"], entry["formattedMessage"]["message"]) == ("Ready", f"heart of {NAME}")

    heartbeat = agent.lib(f"{NAME}-1.0.0", "heartbeat.log")
    eleven_minutes_ago = time.time() - 11 * 60
    os.utime(heartbeat, (eleven_minutes_ago, eleven_minutes_ago))
    assert agent.once() == 0
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    assert (
        entry["formattedMessage"]["message"]
        == "heartbeat.log is stale: last written 11 minutes ago"
    )

    heartbeat.write_text("[{}]")
    assert agent.once() == 0
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert message == "heartbeat.log is malformed: 'heartbeat'"
