"""A package that arrives cut or damaged is a failed download, not a bad package (reference
§2, §6): the zip is checked as soon as it is downloaded — its end record, its central
directory and every member read to the end against its CRC — before anything is
unpacked; a damaged one is fetched from the other channel, and when no channel gives it
whole, the handler reports a download failure that is tried again next round."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.errors import InvalidInput
from azprov.extensions import download
from azprov.extensions.artifacts import DamagedDownload
from azprov.extensions.packages import verify_zip
from azprov.simulator import Answer, SimulatedFabric
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

SAMPLE = "Damaged.Sample"
ACCESS = "Damaged.Access"
PACKAGE = f"/packages/{SAMPLE}-1.0.0.zip"


def _whole() -> bytes:
    return extension_zip(SAMPLE, "1.0.0", style="sample")


def _cut(package: bytes) -> bytes:
    return package[: len(package) * 3 // 5]


def _bad_crc(package: bytes) -> bytes:
    """One byte of a member's stored data changed: every header still reads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as whole, zipfile.ZipFile(buffer, "w") as stored:
        for info in whole.infolist():
            stored.writestr(info.filename, whole.read(info.filename), zipfile.ZIP_STORED)
    damaged = bytearray(buffer.getvalue())
    at = damaged.find(b"OPERATIONS")  # inside sample.py's stored text
    damaged[at] ^= 0x20
    return bytes(damaged)


def _no_end_record(package: bytes) -> bytes:
    return package[: package.rfind(b"PK\x05\x06")]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "cut short": _cut,
    "a member's CRC wrong": _bad_crc,
    "no end record": _no_end_record,
}
NOT_A_ZIP = b"<html><body>The proxy could not reach the server.</body></html>\n"


def _publish(ext: SimulatedExtensions) -> None:
    ext.publish(SAMPLE, "1.0.0", _whole())
    ext.publish(ACCESS, "1.5.0", extension_zip(ACCESS, "1.5.0", style="access"))
    ext.plugins = [PluginSpec(SAMPLE, "1.0", seq_no=1), PluginSpec(ACCESS, "1.5", seq_no=2)]


def _unpacks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The packages unpack_zip was asked to unpack, by name."""
    calls: list[str] = []
    unpack = download.unpack_zip

    def recorded(source: Any, target: Any, *, max_unpacked: int, name: str) -> None:
        calls.append(name)
        unpack(source, target, max_unpacked=max_unpacked, name=name)

    monkeypatch.setattr(download, "unpack_zip", recorded)
    return calls


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_package_damaged_on_one_channel_is_fetched_whole_from_the_other(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    damage: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unpacked = _unpacks(monkeypatch)
    _publish(ext)
    ext.storage_reachable = True  # storage directly first, then the HostGAPlugin
    body = DAMAGE[damage](_whole())
    ext.storage.script([Answer(200, body, close_delimited=True)], PACKAGE)

    assert agent.once() == 0

    assert agent.op_names(SAMPLE) == ["install@1.0.0", "enable@1.0.0"]
    assert handler_entries(ext.status_document())[SAMPLE]["status"] == "Ready"
    sent = [r.headers.get("x-ms-artifact-location", "") for r in fabric.requests]
    assert sum(location.endswith(PACKAGE) for location in sent) == 1  # the HostGAPlugin
    assert unpacked == [SAMPLE, ACCESS]  # the damaged copy was never unpacked


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_package_damaged_on_every_channel_is_a_download_failure_tried_next_round(
    ext: SimulatedExtensions,
    agent: Agent,
    damage: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unpacked = _unpacks(monkeypatch)
    _publish(ext)
    ext.storage_reachable = True
    ext.artifact_faults[PACKAGE] = Answer(200, DAMAGE[damage](_whole()), close_delimited=True)
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        entry = handler_entries(ext.status_document())[SAMPLE]
        message = entry["formattedMessage"]["message"]
        assert entry["status"] == "NotReady"
        assert message.startswith(f"Download failed: cannot download {SAMPLE} 1.0.0:")
        assert "storage: not a whole zip" in message and "HostGAPlugin: not a whole zip" in message
        assert "is invalid" not in message
        assert unpacked == [ACCESS]
        assert handler_entries(ext.status_document())[ACCESS]["status"] == "Ready"

        del ext.artifact_faults[PACKAGE]
        assert runner.round().exit_code == 0
    assert agent.op_names(SAMPLE) == ["install@1.0.0", "enable@1.0.0"]
    assert agent.op_names(ACCESS) == ["enable@1.5.0"]  # not run again for its neighbour


def test_a_download_that_is_not_a_zip_at_all_is_a_download_failure_tried_next_round(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    """A body that is whole but no zip (a proxy's page, a blob replaced) cannot be told
    from a damaged download: the platform agent takes a package it cannot unzip as a
    failed download and tries the next channel (§2), and so does azprov."""
    _publish(ext)
    ext.artifact_faults[PACKAGE] = Answer(200, NOT_A_ZIP)
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        message = handler_entries(ext.status_document())[SAMPLE]["formattedMessage"]["message"]
        assert "not a whole zip" in message and "is invalid" not in message
        del ext.artifact_faults[PACKAGE]
        assert runner.round().exit_code == 0
    assert agent.op_names(SAMPLE) == ["install@1.0.0", "enable@1.0.0"]


def test_a_whole_package_refused_for_what_it_holds_stands_and_is_not_fetched_again(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    buffer = io.BytesIO(_whole())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("../../etc/cron.d/azprov-pwned", b"* * * * * root id\n")
    ext.publish(SAMPLE, "1.0.0", buffer.getvalue())
    ext.plugins = [PluginSpec(SAMPLE, "1.0", seq_no=1)]
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        fetched = len(fabric.requests_to("hostplugin", "/extensionArtifact"))
        assert runner.round().exit_code == 1
        assert len(fabric.requests_to("hostplugin", "/extensionArtifact")) == fetched
    message = handler_entries(ext.status_document())[SAMPLE]["formattedMessage"]["message"]
    assert "climbs out of the package" in message


# -- the check itself ---------------------------------------------------------------

FAST = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
WHOLE = extension_zip(SAMPLE, "1.0.0", style="script")


def test_a_whole_package_passes_the_check() -> None:
    verify_zip(io.BytesIO(WHOLE), SAMPLE, max_unpacked=1 << 20)


@FAST
@given(st.integers(min_value=0, max_value=len(WHOLE) - 1))
def test_every_package_cut_short_is_found_damaged(length: int) -> None:
    with pytest.raises(DamagedDownload, match=r"^not a whole zip "):
        verify_zip(io.BytesIO(WHOLE[:length]), SAMPLE, max_unpacked=1 << 20)


@FAST
@given(st.integers(min_value=0, max_value=len(WHOLE) - 1), st.integers(1, 255))
def test_a_changed_byte_is_damage_a_refusal_or_harmless_never_a_crash(at: int, flip: int) -> None:
    changed = bytearray(WHOLE)
    changed[at] ^= flip
    try:
        verify_zip(io.BytesIO(bytes(changed)), SAMPLE, max_unpacked=1 << 20)
    except (DamagedDownload, InvalidInput) as exc:
        assert "\n" not in str(exc)


def test_the_check_reads_no_more_than_the_cap() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("HandlerManifest.json", b"[]")
        archive.writestr("big", b"\0" * 100_000)
    with pytest.raises(InvalidInput, match="unpacks to more than 50000"):
        verify_zip(io.BytesIO(buffer.getvalue()), SAMPLE, max_unpacked=50_000)
