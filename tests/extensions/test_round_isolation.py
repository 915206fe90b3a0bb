"""One bad item fails alone in a round: a package that cannot be decoded, a plugin that
hits a bug, a key cut in a status message, a damaged state entry, a certificate that
cannot be written. Each is its own error in the uploaded status; the others report."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from typing import Any

import pytest

from azprov.extensions import lifecycle as lifecycle_module
from azprov.extensions import memory as memory_module
from azprov.extensions.certificates import TRANSPORT_KEY
from azprov.extensions.memory import MEMORY_FILE
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

BAD = "Sim.BadExtension"
GOOD = "Sim.GoodExtension"


def _good_is_fine(ext: SimulatedExtensions) -> None:
    entry = handler_entries(ext.status_document())[GOOD]
    assert entry["status"] == "Ready"
    assert entry["runtimeSettingsStatus"]["settingsStatus"]["status"]["status"] == "success"


def _message(ext: SimulatedExtensions, name: str) -> str:
    message: str = handler_entries(ext.status_document())[name]["formattedMessage"]["message"]
    return message


def _corrupt_deflate_package() -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(extension_zip(BAD, "1.0.0"))) as good,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in good.infolist():
            out.writestr(info, good.read(info.filename))
        out.writestr("zzz.bin", b"A" * 100000)
    package = bytearray(buffer.getvalue())
    at = package.find(b"zzz.bin") + len("zzz.bin")
    package[at + 2 : at + 5] = b"\xff\xff\x07"
    return bytes(package)


def test_a_package_whose_data_cannot_be_inflated_fails_alone(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish(BAD, "1.0.0", _corrupt_deflate_package())
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(BAD, "1.0", seq_no=1), PluginSpec(GOOD, "1.0", seq_no=1)]
    assert agent.once() == 1
    _good_is_fine(ext)
    assert handler_entries(ext.status_document())[BAD]["status"] == "NotReady"
    # Data that cannot be inflated cannot be told from a download damaged on the way.
    assert "HostGAPlugin: not a whole zip" in _message(ext, BAD)


def test_a_bug_while_one_plugin_is_applied_is_that_plugins_error_and_the_others_run(
    ext: SimulatedExtensions,
    agent: Agent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apply = lifecycle_module.Lifecycle.apply

    def buggy(self: Any, plugin: Any, *rest: Any) -> Any:
        if plugin.name == BAD:
            raise ValueError("a bug in azprov")
        return apply(self, plugin, *rest)

    monkeypatch.setattr(lifecycle_module.Lifecycle, "apply", buggy)
    ext.publish_test_extension(BAD, "1.0.0")
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(BAD, "1.0", seq_no=1), PluginSpec(GOOD, "1.0", seq_no=1)]
    assert agent.once() == 1
    _good_is_fine(ext)
    assert handler_entries(ext.status_document())[BAD]["status"] == "NotReady"
    assert "internal error: ValueError: a bug in azprov" in _message(ext, BAD)
    assert "ValueError" in caplog.text


def test_a_round_that_crashed_applies_the_goal_again_next_round(
    ext: SimulatedExtensions, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(GOOD, "1.0", seq_no=1)]
    remember = memory_module.Memory.remember
    calls = []

    def fails_once(self: Any, *args: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("disk went away")
        remember(self, *args)

    monkeypatch.setattr(memory_module.Memory, "remember", fails_once)
    with agent.runner() as runner:
        with pytest.raises(RuntimeError):
            runner.round()
        assert runner.round().exit_code == 0
    assert len(calls) == 2
    _good_is_fine(ext)


def test_a_private_key_cut_in_a_status_message_leaves_the_document_valid_json(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + "A" * 3000
    raw = [
        {
            "version": 1.0,
            "status": {
                "name": BAD,
                "operation": "enable",
                "status": "success",
                "code": 0,
                "formattedMessage": {
                    "lang": "en-US",
                    "message": f"generated key: {key}\n-----END PRIVATE KEY-----",
                },
            },
        }
    ]
    ext.publish_test_extension(BAD, "1.0.0")
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [
        PluginSpec(
            BAD, "1.0", seq_no=1, public_settings={"enable": {"raw_status": json.dumps(raw)}}
        ),
        PluginSpec(GOOD, "1.0", seq_no=1),
    ]
    agent.once()
    _good_is_fine(ext)  # the document parses: the cut key did not eat the rest of it
    document = ext.blobs["/status/vm.status"].decode(errors="replace")
    assert "MIIEvQ" not in document
    assert "generated key: <redacted>" in json.dumps(ext.status_document())


def test_an_empty_failure_in_the_state_file_is_reported_not_a_crash(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(BAD, "1.0.0")
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(BAD, "1.0", seq_no=1), PluginSpec(GOOD, "1.0", seq_no=1)]
    assert agent.once() == 0
    path = agent.root / MEMORY_FILE.lstrip("/")
    memory = json.loads(path.read_text())
    memory["plugins"][BAD.lower()]["outcome"]["failure"] = ""
    path.write_text(json.dumps(memory))
    del ext.blobs["/status/vm.status"]
    assert agent.once() == 1
    _good_is_fine(ext)
    assert handler_entries(ext.status_document())[BAD]["status"] == "NotReady"


def test_a_transport_key_that_cannot_be_written_is_one_line_and_the_extensions_still_run(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    fabric.spec.certificates = True
    (agent.root / TRANSPORT_KEY.lstrip("/") / "x").mkdir(parents=True)
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(GOOD, "1.0", seq_no=1)]
    assert agent.once() == 1
    _good_is_fine(ext)
    failures = [r.getMessage() for r in caplog.records if "certificates" in r.getMessage()]
    assert failures and all("\n" not in f for f in failures)
    assert any("TransportPrivate.pem" in f for f in failures)


def test_a_tenant_certificate_that_cannot_be_written_is_one_line_naming_it(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    fabric.spec.certificates = True
    ext.publish_test_extension(GOOD, "1.0.0")
    ext.plugins = [PluginSpec(GOOD, "1.0", seq_no=1)]
    (agent.lib(f"{ext.tenant.thumbprint}.prv") / "x").mkdir(parents=True)
    assert agent.once() == 1
    _good_is_fine(ext)
    failures = [r.getMessage() for r in caplog.records if "certificates" in r.getMessage()]
    assert failures and all("\n" not in f for f in failures)
    assert any(f"{ext.tenant.thumbprint}.prv: Is a directory" in f for f in failures)
