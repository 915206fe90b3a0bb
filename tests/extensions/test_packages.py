"""Packages: channels, manifest failover, version choice, size cap and safe unpacking."""

from __future__ import annotations

import io
import logging
import stat
import zipfile
from pathlib import Path

import pytest

from azprov.errors import InvalidInput
from azprov.extensions.packages import MAX_DIRECTORY_BYTES, MAX_MEMBERS, unpack_zip
from azprov.simulator import Answer
from tests.extensions.conftest import Agent, enable_test_extension, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"


def _zip(*entries: tuple[str, bytes, int]) -> io.BytesIO:
    """A zip of (name, content, unix mode) entries; mode 0 leaves the mode bits out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", b"[]")
        for name, content, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode:
                info.create_system = 3
                info.external_attr = mode << 16
            archive.writestr(info, content)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (("../escape.sh", b"x", 0), "climbs out of the package with '..'"),
        (("bin/../../escape.sh", b"x", 0), "climbs out of the package with '..'"),
        (("/etc/cron.d/evil", b"x", 0), "is an absolute path"),
        (("C:/evil", b"x", 0), "is an absolute path"),
        (("bin\\..\\evil", b"x", 0), "has a backslash"),
        (("out", b"/etc/shadow", stat.S_IFLNK | 0o777), "is a symbolic link"),
        (("bin/out", b"../../x", stat.S_IFLNK | 0o777), "is a symbolic link"),
        (("s", b".", stat.S_IFLNK | 0o777), "is a symbolic link"),
        (("run", b"bin/run.sh", stat.S_IFLNK | 0o777), "is a symbolic link"),
        (("dev", b"", stat.S_IFCHR | 0o600), "is a device, FIFO or socket"),
        (("pipe", b"", stat.S_IFIFO | 0o600), "is a device, FIFO or socket"),
    ],
)
def test_hostile_zip_is_refused_and_leaves_nothing(tmp_path: Path, entry, why: str) -> None:
    target = tmp_path / "lib" / "Pub.Ext-1.0"
    target.parent.mkdir()
    with pytest.raises(InvalidInput) as refused:
        unpack_zip(
            _zip(("ok.sh", b"fine", 0), entry), target, max_unpacked=1 << 20, name="Pub.Ext"
        )
    assert why in str(refused.value)
    assert repr(entry[0]) in str(refused.value) or f"{entry[0]} link" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert list(target.parent.iterdir()) == []
    assert not (tmp_path / "escape.sh").exists()


def test_files_are_made_executable_and_a_sub_folder_manifest_is_lifted(tmp_path: Path) -> None:
    target = tmp_path / "Pub.Ext-1.0"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bin/run.sh", b"#!/bin/sh\n")
        archive.writestr("meta/HandlerManifest.json", b"[1]")
        archive.writestr("zz/HandlerManifest.json", b"[2]")
    unpack_zip(buffer, target, max_unpacked=1 << 20, name="Pub.Ext")
    assert stat.S_IMODE((target / "bin/run.sh").stat().st_mode) == 0o755
    assert (target / "HandlerManifest.json").read_bytes() == b"[1]"
    assert [p.name for p in tmp_path.iterdir()] == ["Pub.Ext-1.0"]


def test_zip_bomb_and_garbage_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unpacks to more than 1000"):
        unpack_zip(_zip(("big", b"\0" * 5000, 0)), tmp_path / "a", max_unpacked=1000, name="P.E")
    with pytest.raises(InvalidInput, match="is not a usable zip file"):
        unpack_zip(io.BytesIO(b"not a zip"), tmp_path / "b", max_unpacked=1000, name="P.E")
    with pytest.raises(InvalidInput, match=r"HandlerManifest\.json.* is not in the package"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("x.sh", b"x")
        unpack_zip(buffer, tmp_path / "c", max_unpacked=1000, name="P.E")
    assert list(tmp_path.iterdir()) == []


def test_a_hostile_package_is_reported_and_nothing_runs(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    buffer = io.BytesIO(extension_zip(NAME, "1.0.0"))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("../../../etc/cron.d/azprov-pwned", b"* * * * * root id\n")
    ext.publish(NAME, "1.0.0", buffer.getvalue())
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    assert agent.once() == 1
    assert not agent.lib(f"{NAME}-1.0.0").exists()
    assert agent.ops(NAME) == []
    assert not (agent.root / "etc/cron.d/azprov-pwned").exists()
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    assert "climbs out of the package" in entry["formattedMessage"]["message"]
    assert [p.name for p in agent.lib().iterdir() if p.name.startswith(".")] == []


def test_package_over_the_size_cap_is_refused(ext: SimulatedExtensions, agent: Agent) -> None:
    ext.publish(NAME, "1.0.0", extension_zip(NAME, "1.0.0") + b"\0" * 4096)
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    assert agent.once("max_package_bytes = 2048\n") == 1
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert "reply larger than 2048 bytes" in message


def test_direct_storage_is_used_when_reachable_and_then_preferred(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    ext.storage_reachable = True
    enable_test_extension(ext, agent, NAME)
    assert fabric.requests_to("hostplugin", "/extensionArtifact") == []
    assert [r.route for r in fabric.requests_to("storage") if r.method == "GET"] == [
        f"/manifests/{NAME}.xml",
        f"/packages/{NAME}-1.0.0.zip",
    ]


def test_manifest_failover_location_is_used(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1, failover=True)]
    assert agent.once() == 0
    locations = [
        r.headers["x-ms-artifact-location"]
        for r in fabric.requests_to("hostplugin", "/extensionArtifact")
    ]
    assert locations[0].endswith(f"/missing/{NAME}.xml")
    assert locations[1].endswith(f"/manifests/{NAME}.xml")


def test_stale_container_refetches_the_goal_state_once(
    ext: SimulatedExtensions, agent: Agent, fabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    fabric.hostplugin.script([Answer(410, b"Gone")], "/extensionArtifact")
    assert agent.once() == 0
    assert len(fabric.requests_to("wireserver", "/machine/?comp=goalstate")) == 2
    assert "the goal state moved on" in caplog.text
    assert agent.op_names(NAME) == ["install@1.0.0", "enable@1.0.0"]


def test_invalid_container_twice_is_a_failure_not_a_loop(
    ext: SimulatedExtensions, agent: Agent, fabric
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    refusal = Answer(400, b"<Error><Code>InvalidContainerConfiguration</Code></Error>")
    fabric.hostplugin.script([refusal, refusal], "/extensionArtifact")
    assert agent.once() == 1
    assert len(fabric.requests_to("wireserver", "/machine/?comp=goalstate")) == 2
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert message.startswith(f"Download failed: no usable manifest for {NAME}")
    assert f"the HostGAPlugin refused container {fabric.spec.container_id} (HTTP 400)" in message


def test_requested_version_missing_from_the_manifest(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "2.1", seq_no=1)]
    assert agent.once() == 1
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert (
        "Sim.TestExtension version='2.1' is invalid: not in the manifest (it lists 1.0.0)"
        in message
    )
    assert handler_entries(ext.status_document())[NAME]["handlerVersion"] == "2.1"


def test_a_package_missing_from_storage_is_reported(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    del ext.blobs[f"/packages/{NAME}-1.0.0.zip"]
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    assert agent.once() == 1
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert message.startswith(f"Download failed: cannot download {NAME} 1.0.0:")
    assert "HTTP 404" in message


def test_a_duplicate_entry_is_refused(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        package = _zip(("a.sh", b"1", 0), ("a.sh", b"2", 0))
    with pytest.raises(InvalidInput, match=r"package entry='a\.sh' is invalid: appears twice"):
        unpack_zip(package, tmp_path / "P.E-1", max_unpacked=1000, name="P.E")
    assert list(tmp_path.iterdir()) == []


def _one_member_zip(method: int, name: str = "HandlerManifest.json") -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        archive.writestr(name, b"[]" * 5000)
    return bytearray(buffer.getvalue())


def _set_flag(package: bytearray, flag: int) -> bytearray:
    """Set a general-purpose flag bit in the local and the central header."""
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = package.find(signature) + offset
        package[at] |= flag & 0xFF
        package[at + 1] |= flag >> 8
    return package


def _corrupt_data(method: int) -> bytearray:
    package = _one_member_zip(method)
    at = package.find(b"HandlerManifest.json") + len("HandlerManifest.json")
    package[at + 1] ^= 0xFF
    package[at + 2] = 0xFF
    package[at + 10] ^= 0xFF
    package[at + 11] ^= 0xFF
    return package


def _bad_utf8_name() -> bytearray:
    package = _set_flag(_one_member_zip(zipfile.ZIP_STORED, "Hx.json"), 0x800)
    package[package.find(b"Hx.json", package.find(b"PK\x01\x02")) + 1] = 0xFF
    return package


UNDECODABLE_PACKAGES = {
    "corrupt deflate": lambda: _corrupt_data(zipfile.ZIP_DEFLATED),
    "corrupt lzma": lambda: _corrupt_data(zipfile.ZIP_LZMA),
    "corrupt bzip2": lambda: _corrupt_data(zipfile.ZIP_BZIP2),
    "encrypted": lambda: _set_flag(_one_member_zip(zipfile.ZIP_STORED), 0x1),
    "name not utf-8": _bad_utf8_name,
}


@pytest.mark.parametrize("damage", list(UNDECODABLE_PACKAGES))
def test_a_package_that_cannot_be_decoded_is_its_own_typed_error(
    tmp_path: Path, damage: str
) -> None:
    package = io.BytesIO(bytes(UNDECODABLE_PACKAGES[damage]()))
    with pytest.raises(InvalidInput) as refused:
        unpack_zip(package, tmp_path / "P.E-1", max_unpacked=1 << 20, name="P.E")
    assert str(refused.value).startswith("package ")
    assert "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_a_package_with_more_members_than_any_handler_ships_is_refused_before_unpacking(
    tmp_path: Path,
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", b"[]")
        for number in range(MAX_MEMBERS):
            archive.writestr(f"e/{number}", b"")
    with pytest.raises(InvalidInput, match=f"has more than {MAX_MEMBERS} entries"):
        unpack_zip(buffer, tmp_path / "P.E-1", max_unpacked=1 << 20, name="P.E")
    assert list(tmp_path.iterdir()) == []


def _with_directory_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: zipfile.ZipFile) -> None:
        raise AssertionError("the central directory was read")

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", refuse)


def test_a_package_declaring_too_many_entries_is_refused_before_its_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", b"[]")
        for number in range(MAX_MEMBERS):
            archive.writestr(f"e/{number}", b"")
    _with_directory_unread(monkeypatch)
    with pytest.raises(InvalidInput, match=f"has more than {MAX_MEMBERS} entries"):
        unpack_zip(buffer, tmp_path / "P.E-1", max_unpacked=1 << 20, name="P.E")


def test_a_package_whose_end_record_understates_a_huge_directory_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", b"[]")
        for number in range(MAX_DIRECTORY_BYTES // 246 + 1):  # 46 + a 200-byte name each
            archive.writestr(f"{number:0200d}", b"")
    package = bytearray(buffer.getvalue())
    end = package.rfind(b"PK\x05\x06")
    package[end + 8 : end + 12] = b"\x01\x00\x01\x00"  # one entry, it says
    _with_directory_unread(monkeypatch)
    with pytest.raises(InvalidInput, match="bytes of central directory"):
        unpack_zip(
            io.BytesIO(bytes(package)), tmp_path / "P.E-1", max_unpacked=1 << 20, name="P.E"
        )
