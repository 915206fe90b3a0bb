"""The initramfs reader: bounded in size, memory and time; what it cannot bound is unknown."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import shutil
import signal
import subprocess
import time
import tracemalloc
from pathlib import Path
from typing import Iterator, Optional, Union

import pytest

from azprov.checks.cpio import MalformedArchive, cpio_names
from azprov.checks.initramfs import Limits, list_initramfs
from azprov.checks.tree import Tree
from azprov.host.root import TargetRoot
from tests.checks.trees import newc

EARLY = newc({"kernel/x86/microcode/GenuineIntel.bin": b"micro"})
MAIN = newc({"usr/lib/modules/x/hv_vmbus.ko": b"\x7fELF", "init": b"#!/bin/sh\n"})
NO_TOOLS = "/nonexistent-azprov-tools"


def listed(path: Path, limits: Optional[Limits] = None) -> Union[list[str], str]:
    """The listing of the image at `path`, through a tree rooted at its folder."""
    return list_initramfs(Tree(TargetRoot(path.parent)), path.name, limits or Limits())


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body runs longer than `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def header(name: bytes, size: int = 0, raw: Optional[dict[str, bytes]] = None) -> bytes:
    """One newc header and its padded name; `raw` replaces fields' 8 characters as given."""
    fields = dict.fromkeys(
        [
            "ino",
            "mode",
            "uid",
            "gid",
            "nlink",
            "mtime",
            "filesize",
            "devmajor",
            "devminor",
            "rdevmajor",
            "rdevminor",
        ],
        0,
    )
    fields.update(ino=1, mode=0o100644, nlink=1, filesize=size)
    encoded = {key: b"%08X" % value for key, value in fields.items()}
    encoded["namesize"] = b"%08X" % (len(name) + 1)
    encoded["check"] = b"00000000"
    encoded.update(raw or {})
    out = b"070701" + b"".join(encoded.values()) + name + b"\0"
    return out + b"\0" * (-len(out) % 4)


def tools(tmp_path: Path, scripts: dict[str, str]) -> str:
    """A PATH holding only these shell scripts."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (folder / name).write_text("#!/bin/sh\n" + body)
        (folder / name).chmod(0o755)
    return str(folder)


def gone(pid: int) -> bool:
    """The process no longer runs (reaped, or a zombie its new parent has yet to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# --- the cpio headers: every field checked, every entry moves forward, the count is capped


def test_negative_cpio_namesize_is_refused_not_looped(tmp_path: Path) -> None:
    """The issue's 128-byte file: namesize "-0000070" walked the reader back to the start."""
    path = tmp_path / "initrd.img"
    data = header(b"abc", raw={"namesize": b"-0000070"})
    path.write_bytes(data + b"\0" * (128 - len(data)))
    with within(3):
        found = listed(path)
    assert found == (
        "not a newc cpio archive: entry 1 at byte 0 has namesize '-0000070', not 8 hex digits"
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("filesize", b"-0000001"),
        ("filesize", b"+0000010"),
        ("filesize", b"0000_010"),
        ("namesize", b" 0000004"),
        ("mode", b"zzzzzzzz"),
    ],
)
def test_cpio_fields_that_python_int_would_accept_are_refused(field: str, value: bytes) -> None:
    data = header(b"abc", raw={field: value}) + header(b"TRAILER!!!")
    with pytest.raises(MalformedArchive, match=f"entry 1 at byte 0 has {field} '"):
        cpio_names(data)


def test_absurd_cpio_filesize_is_a_truncated_archive_not_a_silent_end(tmp_path: Path) -> None:
    path = tmp_path / "initrd.img"
    path.write_bytes(header(b"usr/lib/a.ko", size=0xFFFFFFFF) + b"\x7fELF" * 10)
    assert listed(path) == ("not a newc cpio archive: it ends inside entry 1 (at byte 0)")


@pytest.mark.parametrize("namesize", [0, 4097, 0xFFFFFFFF])
def test_cpio_namesize_out_of_bounds_is_refused(namesize: int) -> None:
    data = header(b"abc", raw={"namesize": b"%08X" % namesize}) + b"\0" * 5000
    with pytest.raises(MalformedArchive, match=f"has namesize {namesize}, outside 1..4096"):
        cpio_names(data)


def test_cpio_name_without_its_nul_is_refused() -> None:
    data = header(b"abc", raw={"namesize": b"00000003"}) + header(b"TRAILER!!!")
    with pytest.raises(MalformedArchive, match="entry 1 at byte 0 has a name without its NUL"):
        cpio_names(data)


def test_cpio_entry_count_is_capped() -> None:
    archive = newc({f"f{number}": b"" for number in range(50)})
    assert len(cpio_names(archive, max_entries=50)) == 50
    with pytest.raises(MalformedArchive, match="more than 49 entries"):
        cpio_names(archive, max_entries=49)


def test_junk_after_the_trailer_of_an_unpacked_stream_is_refused() -> None:
    junk = rf"entry 4 at byte {len(MAIN) + 8} starts with 'jun\\x01kx', not 070701 or 070702"
    with pytest.raises(MalformedArchive, match=junk):
        cpio_names(MAIN + b"\0" * 8 + b"jun\1k" + b"x" * 200)


def test_concatenated_archives_and_padding_in_one_stream_are_read() -> None:
    assert cpio_names(b"\0" * 4 + EARLY + b"\0" * 512 + MAIN) == [
        "kernel/x86/microcode/GenuineIntel.bin",
        "usr/lib/modules/x/hv_vmbus.ko",
        "init",
    ]


# --- unpacking: streamed, capped, timed; the tool is killed and reaped


def test_over_the_size_cap_is_unknown_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "initrd.img"
    with path.open("wb") as handle:
        handle.write(EARLY)
        handle.truncate(3 << 20)  # sparse, like the reviewer's 600 MB one
    assert listed(path, Limits(max_size=1 << 20)) == "it is 3 MiB, over the 1 MiB read here"


def test_zero_padding_is_skipped_quickly(tmp_path: Path) -> None:
    """Early cpio, 32 MiB of zeros (sparse), then the gzip main archive."""
    path = tmp_path / "initrd.img"
    with path.open("wb") as handle:
        handle.write(EARLY)
        handle.seek(len(EARLY) + (32 << 20))
        handle.write(gzip.compress(MAIN))
    started = time.monotonic()
    names = listed(path)
    assert time.monotonic() - started < 2
    assert names == [
        "kernel/x86/microcode/GenuineIntel.bin",
        "usr/lib/modules/x/hv_vmbus.ko",
        "init",
    ]


def test_unpacked_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", NO_TOOLS)
    path = tmp_path / "initrd.img"
    path.write_bytes(lzma.compress(newc({"big": b"\0" * (1 << 20)})))
    assert listed(path, Limits(max_unpacked=1 << 16)) == ("it unpacks to more than 65536 bytes")


def test_gzip_archive_is_listed_without_holding_it_in_memory(tmp_path: Path) -> None:
    """32 MiB unpacked, read as it is inflated: the peak stays a few chunks, not the archive."""
    path = tmp_path / "initrd.img"
    path.write_bytes(gzip.compress(newc({"big": b"\0" * (32 << 20), "init": b"x"}), 1))
    tracemalloc.start()
    try:
        names = listed(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert names == ["big", "init"]
    assert peak < 8 << 20, f"{peak >> 20} MiB"


@pytest.mark.skipif(shutil.which("zstd") is None, reason="needs the zstd tool")
def test_zstd_bomb_stops_at_the_cap_quickly(tmp_path: Path) -> None:
    """The issue's bomb, made small: 256 MiB of zeros in a few KiB of zstd, capped at 1 MiB.

    zstd's output is read as it comes and zstd is killed at the cap: quick, and the
    peak stays a few chunks (it used to be captured whole, then measured)."""
    archive = newc({"big": b"\0" * (256 << 20)})
    packed = subprocess.run(["zstd", "-q", "-c"], input=archive, capture_output=True, check=True)
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + packed.stdout)
    del archive
    tracemalloc.start()
    started = time.monotonic()
    try:
        found = listed(path, Limits(max_unpacked=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB"
    assert time.monotonic() - started < 2
    assert found == "it unpacks to more than 1 MiB"


def test_decompressor_that_never_stops_is_killed_and_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "zstd.pid"
    monkeypatch.setenv(
        "PATH", tools(tmp_path, {"zstd": f"echo $$ > {pid_file}\nexec /bin/cat /dev/zero\n"})
    )
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + b"\x28\xb5\x2f\xfd" + b"\1" * 64)
    with within(10):
        found = listed(path, Limits(max_unpacked=4 << 20))
    assert found == "it unpacks to more than 4 MiB"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # a zombie would still answer: it was reaped
        os.kill(pid, 0)


def test_tools_have_a_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", tools(tmp_path, {"zstd": "exec /bin/sleep 30\n"}))
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + b"\x28\xb5\x2f\xfd" + b"\1" * 64)
    started = time.monotonic()
    found = listed(path, Limits(timeout=0.5))
    assert time.monotonic() - started < 5
    assert found == "zstd took more than 0.5 s"


def test_unpacking_without_tools_has_a_deadline(tmp_path: Path) -> None:
    path = tmp_path / "initrd.img"
    path.write_bytes(gzip.compress(newc({"big": b"\0" * (8 << 20)})))
    assert listed(path, Limits(timeout=0)) == "unpacking it took more than 0 s"


def test_a_lister_and_its_children_are_killed_at_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lsinitramfs is a script that runs others: the whole group goes, not just the shell."""
    child_pid = tmp_path / "child.pid"
    lister = f"/bin/sleep 30 &\necho $! > {child_pid}\nwait\n"
    monkeypatch.setenv("PATH", tools(tmp_path, {"lsinitramfs": lister}))
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + b"\x28\xb5\x2f\xfd" + b"\1" * 64)
    started = time.monotonic()
    found = listed(path, Limits(timeout=0.5))
    assert time.monotonic() - started < 5
    assert found == "zstd is not installed, and lsinitramfs took more than 0.5 s"
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


def test_decompressor_reads_the_open_file_not_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zstd gets the image on its stdin, the lister a /proc/self/fd path: no host path that a
    link swapped in after the check opened the file could redirect."""
    args = tmp_path / "args"
    zstd = f'/bin/readlink /proc/self/fd/0 > {args}; echo "$@" >> {args}\nexit 1\n'
    lister = f'echo "$1" >> {args}\n/usr/bin/head -c 6 "$1"\n'
    monkeypatch.setenv("PATH", tools(tmp_path, {"zstd": zstd, "lsinitramfs": lister}))
    path = tmp_path / "initrd.img"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\1" * 64)
    found = listed(path, Limits())
    assert found == "zstd failed (exit status 1)"
    stdin, zstd_args = args.read_text().splitlines()
    assert stdin == str(path) and zstd_args == "-dcq"
    unknown = tmp_path / "unknown.img"
    unknown.write_bytes(b"\x04\x22\x4d\x18" + b"\1" * 64)
    assert listed(unknown) == ['\x04"M\x18\x01\x01']
    assert args.read_text().splitlines()[-1].startswith("/proc/self/fd/")


def test_a_link_out_of_the_tree_is_not_followed(tmp_path: Path) -> None:
    """The image is opened through the tree: a link leading out of it reads nothing
    outside (it used to be opened by host path, following any link)."""
    (tmp_path / "outside.img").write_bytes(EARLY)
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot/initrd.img").symlink_to(tmp_path / "outside.img")
    (root / "boot/up.img").symlink_to("../../outside.img")
    tree = Tree(TargetRoot(root))
    assert list_initramfs(tree, "boot/initrd.img") == "it is missing"
    assert list_initramfs(tree, "boot/up.img") == "it is missing"
    os.mkfifo(root / "boot/fifo.img")
    with within(5):
        assert list_initramfs(tree, "boot/fifo.img") == "it is a FIFO"


def test_truncated_archive_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", NO_TOOLS)
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + gzip.compress(MAIN)[:-20])
    assert listed(path) == "truncated compressed data"


def test_unknown_compression_asks_the_distribution_lister(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", NO_TOOLS)
    path = tmp_path / "initrd.img"
    path.write_bytes(EARLY + b"\x04\x22\x4d\x18" + b"\0" * 64)
    assert listed(path) == (
        "unknown compression (starts 04224d18), and neither lsinitramfs nor lsinitrd is"
    )
