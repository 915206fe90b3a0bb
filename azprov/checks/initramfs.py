"""Listing an initramfs: concatenated newc cpio archives, each possibly compressed.

gzip, xz/lzma and bzip2 come from the stdlib; zstd and lz4 (Debian 12 builds
zstd) need their tools, or the distribution's lister (`lsinitramfs`, `lsinitrd`).
The file is mapped, not read, and walked by offset (no copies); zero padding
is skipped with one search; sizes are capped and every tool has a timeout, so
a huge or sparse file costs neither gigabytes nor minutes: it is unknown.
"""

from __future__ import annotations

import bz2
import errno
import lzma
import mmap
import os
import re
import stat
import subprocess
import zlib
from pathlib import Path
from typing import BinaryIO, Optional, Union

from azprov.checks.tools import find_tool

MAX_SIZE = 512 << 20  # the file (the largest real ones are a few hundred MiB)
MAX_UNPACKED = 1 << 30  # its compressed archive, unpacked
TIMEOUT = 60
_TOOLS = {
    b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"],
    b"\x02\x21\x4c\x18": ["lz4", "-dcq"],
}
_CHUNK = 1 << 20
_NONZERO = re.compile(rb"[^\x00]")
Buffer = Union[bytes, bytearray, mmap.mmap]


def _cpio_names(data: Buffer, offset: int, names: list[str]) -> int:
    """Read one newc archive from `offset`; return where the data after it starts."""
    while data[offset : offset + 6] in (b"070701", b"070702"):
        header = data[offset : offset + 110]
        size = int(header[54:62], 16)
        name_size = int(header[94:102], 16)
        name = data[offset + 110 : offset + 110 + name_size - 1].decode("utf-8", "replace")
        offset = (offset + 110 + name_size + 3) & ~3
        offset = (offset + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        names.append(name)
    return offset


def _skip_zeros(data: Buffer, offset: int, fd: Optional[int] = None) -> int:
    """The next non-zero byte from `offset`: holes of a sparse file are skipped unread."""
    size = len(data)
    while offset < size:
        end = size
        if fd is not None:
            try:
                offset = os.lseek(fd, offset, getattr(os, "SEEK_DATA", 3))
                end = os.lseek(fd, offset, getattr(os, "SEEK_HOLE", 4))
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but a hole from here to the end
                    return size
                fd = None  # no hole support here: search the bytes
                continue
        found = _NONZERO.search(data, offset, min(end, size))
        if found:
            return found.start()
        offset = end
    return size


class _TooBig(Exception):
    pass


def _room(out: bytearray) -> int:
    if len(out) > MAX_UNPACKED:
        raise _TooBig
    return MAX_UNPACKED + 1 - len(out)


def _gunzip(view: memoryview, out: bytearray) -> bool:
    """Inflate one gzip member fed in chunks (no copy of the rest); True at its end."""
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for start in range(0, len(view), _CHUNK):
        pending: Union[bytes, memoryview] = view[start : start + _CHUNK]
        while pending and not unzip.eof:
            out += unzip.decompress(pending, _room(out))
            pending = unzip.unconsumed_tail
        if unzip.eof:
            break
    _room(out)
    return unzip.eof


def _unstream(view: memoryview, xz: bool, out: bytearray) -> bool:
    """xz/lzma or bzip2 fed in chunks, output capped; True at the stream's end."""
    unpack = lzma.LZMADecompressor() if xz else bz2.BZ2Decompressor()
    for start in range(0, len(view), _CHUNK):
        chunk: Union[bytes, memoryview] = view[start : start + _CHUNK]
        while not unpack.eof:
            out += unpack.decompress(chunk, _room(out))
            chunk = b""
            if unpack.needs_input:
                break
        if unpack.eof:
            break
    _room(out)
    return unpack.eof


def _unpack_stdlib(view: memoryview) -> Union[bytearray, str, None]:
    """gzip, xz/lzma or bzip2 from the stdlib (at most MAX_UNPACKED); None: another format."""
    magic = bytes(view[:6])
    out = bytearray()
    try:
        if magic[:2] == b"\x1f\x8b":
            ended = _gunzip(view, out)
        elif magic == b"\xfd7zXZ\x00" or magic[:3] == b"\x5d\x00\x00":
            ended = _unstream(view, True, out)
        elif magic[:3] == b"BZh":
            ended = _unstream(view, False, out)
        else:
            return None
    except _TooBig:
        return f"it unpacks to more than {MAX_UNPACKED >> 20} MiB"
    return out if ended else "truncated compressed data"


def _unpack_tool(handle: BinaryIO, offset: int, magic: bytes) -> Union[bytes, str]:
    for start, argv in _TOOLS.items():
        if magic.startswith(start):
            tool = find_tool(argv[0])
            if tool is None:
                return f"{argv[0]} is not installed"
            handle.seek(offset)  # the tool reads the file itself from there: nothing is copied
            try:
                done = subprocess.run(
                    [tool, *argv[1:]],
                    stdin=handle,
                    capture_output=True,
                    check=False,
                    timeout=TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                return f"{argv[0]} took more than {TIMEOUT} s"
            if done.returncode != 0:
                return f"{argv[0]} failed"
            if len(done.stdout) > MAX_UNPACKED:
                return f"it unpacks to more than {MAX_UNPACKED >> 20} MiB"
            return done.stdout
    return f"unknown compression (starts {magic.hex()})"


def _with_lister(path: Path) -> Union[list[str], str]:
    """The distribution's lister's answer, or why there is none."""
    why = "neither lsinitramfs nor lsinitrd is"
    for argv in (["lsinitramfs", str(path)], ["lsinitrd", "--list", str(path)]):
        tool = find_tool(argv[0])
        if tool:
            try:
                done = subprocess.run(
                    [tool, *argv[1:]], capture_output=True, text=True, check=False, timeout=TIMEOUT
                )
            except subprocess.TimeoutExpired:
                why = f"{argv[0]} took more than {TIMEOUT} s"
                continue
            if done.returncode == 0:
                return done.stdout.split()
            why = f"{argv[0]} failed"
    return why


def list_initramfs(path: Path) -> Union[list[str], str]:
    """Every path in the initramfs, or a sentence saying why it could not be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return "it is not a regular file"
            if info.st_size > MAX_SIZE:
                return f"it is {info.st_size >> 20} MiB, over the {MAX_SIZE >> 20} MiB read here"
            if info.st_size == 0:
                return "it is empty"
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
                return _list(data, handle, path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    except ValueError:  # a cpio header that is not hex: not an initramfs this reader knows
        return "not a newc cpio archive"


def _list(data: mmap.mmap, handle: BinaryIO, path: Path) -> Union[list[str], str]:
    names: list[str] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + 6] in (b"070701", b"070702"):
            offset = _skip_zeros(data, _cpio_names(data, offset, names), handle.fileno())
            continue
        unpacked: Union[bytes, bytearray, str, None]
        try:
            with memoryview(data) as whole, whole[offset:] as view:
                unpacked = _unpack_stdlib(view)
            if unpacked is None:
                unpacked = _unpack_tool(handle, offset, data[offset : offset + 4])
        except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError):
            unpacked = "corrupt compressed data"
        if isinstance(unpacked, str) or unpacked is None:
            listed = _with_lister(path)
            return listed if isinstance(listed, list) else f"{unpacked}, and {listed}"
        _cpio_names(unpacked, 0, names)
        break
    return names
