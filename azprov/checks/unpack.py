"""Unpacking a compressed stream from an open file, in bounded pieces.

gzip, xz/lzma and bzip2 come from the stdlib, fed a chunk at a time with their
output capped per call; zstd and lz4 are their tools, reading the open file on
their stdin (no path is opened again) and read as they write. Nothing here
holds more than a chunk or two: the caller parses each piece and decides when
enough is enough. A tool is killed with anything it started, and reaped, on
every way out: its end, a failure, the deadline, or the caller stopping early.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import lzma
import os
import selectors
import signal
import subprocess
import time
import zlib
from typing import Generator

from azprov.checks.tools import find_tool
from azprov.errors import AzprovError

CHUNK = 1 << 20
_TOOLS = {
    # zstd itself refuses frames whose window needs more than 128 MiB of memory.
    b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"],
    b"\x02\x21\x4c\x18": ["lz4", "-dcq"],
}
Pieces = Generator[bytes, None, None]


class UnpackFailed(AzprovError):
    """The compressed data is corrupt, cut short, or passed the size or time cap."""


class NoDecoder(AzprovError):
    """Nothing here reads this compression: the distribution's lister may."""


def _inflated(fd: int, offset: int, end: int) -> Pieces:
    """One gzip member from `offset`, in output pieces of at most a chunk."""
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for piece in pieces(fd, offset, end):
        while not unzip.eof:
            try:
                out = unzip.decompress(piece, CHUNK)
            except zlib.error as exc:
                raise UnpackFailed(f"corrupt compressed data ({exc})") from None
            if out:
                yield out
            piece = unzip.unconsumed_tail
            if not piece and len(out) < CHUNK:
                break  # this piece is used up and nothing is held back: read on
        if unzip.eof:
            return
    raise UnpackFailed("truncated compressed data")


def _unstreamed(fd: int, offset: int, end: int, xz: bool) -> Pieces:
    """An xz/lzma or bzip2 stream from `offset`, in output pieces of at most a chunk."""
    unpack = lzma.LZMADecompressor() if xz else bz2.BZ2Decompressor()
    for piece in pieces(fd, offset, end):
        while not unpack.eof:
            try:
                out = unpack.decompress(piece, CHUNK)
            except (lzma.LZMAError, OSError, EOFError) as exc:  # bz2 says OSError
                raise UnpackFailed(f"corrupt compressed data ({exc})") from None
            piece = b""
            if out:
                yield out
            if unpack.needs_input:
                break
        if unpack.eof:
            return
    raise UnpackFailed("truncated compressed data")


def pieces(fd: int, offset: int, end: int) -> Pieces:
    while offset < end:
        piece = os.pread(fd, min(CHUNK, end - offset), offset)
        if not piece:
            return  # the file shrank while being read
        offset += len(piece)
        yield piece


def tool_output(
    argv: list[str], deadline: float, timeout: float, stdin: int, pass_fds: tuple[int, ...] = ()
) -> Pieces:
    """A tool's stdout as it comes. Whether it ends, fails, passes the deadline or the
    reader stops early, the tool and anything it started are killed, then it is reaped."""
    name = os.path.basename(argv[0])
    try:
        tool = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            pass_fds=pass_fds,
            start_new_session=True,  # its own process group: a script's children go with it
        )
    except OSError as exc:
        raise NoDecoder(f"{name} cannot be run ({exc.strerror})") from None
    assert tool.stdout is not None
    with contextlib.suppress(OSError):  # fewer, larger reads; the default pipe holds 64 KiB
        fcntl.fcntl(tool.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), CHUNK)
    try:
        with selectors.DefaultSelector() as ready:
            ready.register(tool.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not ready.select(left):
                    raise UnpackFailed(f"{name} took more than {timeout:g} s")
                out = os.read(tool.stdout.fileno(), CHUNK)
                if not out:
                    break
                yield out
        while os.waitid(os.P_PID, tool.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            if time.monotonic() > deadline:
                raise UnpackFailed(f"{name} took more than {timeout:g} s")
            time.sleep(0.01)
    finally:
        # Not reaped yet, so its id is still its group's and cannot name anyone else's.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tool.pid, signal.SIGKILL)
        tool.wait()
        tool.stdout.close()
    if tool.returncode != 0:
        raise UnpackFailed(f"{name} failed (exit status {tool.returncode})")


def unpacked(fd: int, offset: int, end: int, deadline: float, timeout: float) -> Pieces:
    """The compressed stream at `offset`, unpacked, in pieces."""
    magic = os.pread(fd, 6, offset)
    if magic[:2] == b"\x1f\x8b":
        return _inflated(fd, offset, end)
    if magic == b"\xfd7zXZ\x00" or magic[:3] == b"\x5d\x00\x00":
        return _unstreamed(fd, offset, end, xz=True)
    if magic[:3] == b"BZh":
        return _unstreamed(fd, offset, end, xz=False)
    for start, argv in _TOOLS.items():
        if magic.startswith(start):
            tool = find_tool(argv[0])
            if tool is None:
                raise NoDecoder(f"{argv[0]} is not installed")
            # The tool reads the open file from its stdin (the same open file, from
            # `offset`): nothing is copied, and no path is opened again.
            os.lseek(fd, offset, os.SEEK_SET)
            return tool_output([tool, *argv[1:]], deadline, timeout, stdin=fd)
    raise NoDecoder(f"unknown compression (starts {magic[:4].hex()})")
