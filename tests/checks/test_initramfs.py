"""The initramfs reader: bounded in size, memory and time; what it cannot bound is unknown."""

from __future__ import annotations

import gzip
import lzma
import time
from pathlib import Path

import pytest

from azprov.checks import initramfs
from azprov.checks.initramfs import list_initramfs
from tests.checks.trees import newc

EARLY = newc({"kernel/x86/microcode/GenuineIntel.bin": b"micro"})
MAIN = newc({"usr/lib/modules/x/hv_vmbus.ko": b"\x7fELF", "init": b"#!/bin/sh\n"})


def test_over_the_size_cap_is_unknown_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(initramfs, "MAX_SIZE", 1 << 20)
    path = tmp_path / "initrd.img"
    with path.open("wb") as handle:
        handle.write(EARLY)
        handle.truncate(3 << 20)  # sparse, like the reviewer's 600 MB one
    assert list_initramfs(path) == "it is 3 MiB, over the 1 MiB read here"


def test_zero_padding_is_skipped_quickly(tmp_path: Path) -> None:
    """Early cpio, 32 MiB of zeros (sparse), then the gzip main archive."""
    path = tmp_path / "initrd.img"
    with path.open("wb") as handle:
        handle.write(EARLY)
        handle.seek(len(EARLY) + (32 << 20))
        handle.write(gzip.compress(MAIN))
    started = time.monotonic()
    names = list_initramfs(path)
    assert time.monotonic() - started < 2
    assert names == [
        "kernel/x86/microcode/GenuineIntel.bin",
        "usr/lib/modules/x/hv_vmbus.ko",
        "init",
    ]


def test_unpacked_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initramfs, "MAX_UNPACKED", 1 << 16)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    path = tmp_path / "initrd.img"
    path.write_bytes(lzma.compress(newc({"big": b"\0" * (1 << 20)})))
    assert list_initramfs(path) == (
        "it unpacks to more than 0 MiB, and neither lsinitramfs nor lsinitrd is"
    )


def test_truncated_archive_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + gzip.compress(MAIN)[:-20])
    assert list_initramfs(path) == (
        "truncated compressed data, and neither lsinitramfs nor lsinitrd is"
    )


def test_tools_have_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("zstd", "lsinitramfs"):
        (tools / name).write_text("#!/bin/sh\nexec /bin/sleep 30\n")
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(initramfs, "TIMEOUT", 0.5)
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + b"\x28\xb5\x2f\xfd" + b"\1" * 64)
    started = time.monotonic()
    found = list_initramfs(path)
    assert time.monotonic() - started < 5
    assert found == "zstd took more than 0.5 s, and lsinitramfs took more than 0.5 s"
