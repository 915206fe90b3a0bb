"""Listing an initramfs: concatenated newc cpio archives, each possibly compressed.

gzip, xz/lzma and bzip2 come from the stdlib; zstd and lz4 (Debian 12 builds
zstd) need their tools, or the distribution's lister (`lsinitramfs`, `lsinitrd`).
The image is hostile until bounded: the file is read by offset (holes of a
sparse file skipped unread, a file's data jumped), every compressed archive is
parsed as it streams out of its decompressor (nothing unpacked is kept but the
names), and its size, its entry count and the wall time are capped. Whatever
passes a bound is `unknown:` with the reason, never a guess; only a missing
decoder is handed to the distribution's lister.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import stat
import subprocess
import time
from typing import Union

from azprov.checks.cpio import MAGICS, MAX_ENTRIES, MalformedArchive, NewcReader
from azprov.checks.tools import find_tool
from azprov.checks.tree import Tree
from azprov.checks.unpack import CHUNK, NoDecoder, UnpackFailed, pieces, tool_output, unpacked

MAX_SIZE = 512 << 20  # the file (the largest real ones are a few hundred MiB)
MAX_UNPACKED = 1 << 30  # its compressed archive, unpacked (real ones: 100-400 MiB)
MAX_LISTING = 64 << 20  # a lister's output (a few hundred KiB for a real image)
TIMEOUT = 60
_NONZERO = re.compile(rb"[^\x00]")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one listing may cost; tests lower them to keep their bombs small."""

    max_size: int = MAX_SIZE
    max_unpacked: int = MAX_UNPACKED
    max_entries: int = MAX_ENTRIES
    timeout: float = TIMEOUT


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and not count % (1 << 20) else f"{count} bytes"


def _read_compressed(fd: int, offset: int, end: int, names: list[str], limits: Limits) -> None:
    """Parse the compressed archive at `offset` as it is unpacked, within the caps."""
    deadline = time.monotonic() + limits.timeout
    total = 0
    reader = NewcReader(names, limits.max_entries)  # positions in reasons: the unpacked stream's
    stream = unpacked(fd, offset, end, deadline, limits.timeout)
    with contextlib.closing(stream):  # on any exit: a tool is killed and reaped now
        for piece in stream:
            total += len(piece)
            if total > limits.max_unpacked:
                raise UnpackFailed(f"it unpacks to more than {_size(limits.max_unpacked)}")
            if time.monotonic() > deadline:
                raise UnpackFailed(f"unpacking it took more than {limits.timeout:g} s")
            view = memoryview(piece)
            while view:
                view = view[reader.feed(view) :]
    reader.close()


def _skip_zeros(fd: int, offset: int, end: int) -> int:
    """The next non-zero byte from `offset`: holes of a sparse file are skipped unread."""
    holes = True
    while offset < end:
        data_end = end
        if holes:
            try:
                offset = os.lseek(fd, offset, getattr(os, "SEEK_DATA", 3))
                data_end = min(end, os.lseek(fd, offset, getattr(os, "SEEK_HOLE", 4)))
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nothing but a hole from here to the end
                    return end
                holes = False  # no hole support here: search the bytes
                continue
        for piece in pieces(fd, offset, data_end):
            found = _NONZERO.search(piece)
            if found:
                return offset + found.start()
            offset += len(piece)
        if offset < data_end:
            return end  # the file shrank while being read
    return end


def _read_archive(fd: int, offset: int, end: int, names: list[str], limits: Limits) -> int:
    """Parse the uncompressed archive at `offset`; where the bytes after it start."""
    reader = NewcReader(names, limits.max_entries, position=offset)
    while offset < end:
        if reader.skippable():
            count = min(reader.skippable(), end - offset)
            reader.skip(count)  # a file's data is jumped, never read
            offset += count
        else:
            piece = os.pread(fd, min(CHUNK, end - offset), offset)
            if not piece:
                break
            offset += reader.feed(piece)
        if reader.between:
            return offset
    reader.close()
    return offset


def _names(fd: int, size: int, limits: Limits) -> list[str]:
    """Every path in the image; raises MalformedArchive, UnpackFailed or NoDecoder."""
    names: list[str] = []
    offset = 0
    while offset < size:
        if os.pread(fd, 6, offset) in MAGICS:
            offset = _skip_zeros(fd, _read_archive(fd, offset, size, names, limits), size)
            continue
        _read_compressed(fd, offset, size, names, limits)
        break
    return names


def _with_lister(fd: int, timeout: float) -> Union[list[str], str]:
    """The distribution's lister's answer, or why there is none. It gets the open file
    as /proc/self/fd/N (each process it starts opens that same file), never a host path."""
    why = "neither lsinitramfs nor lsinitrd is"
    image = f"/proc/self/fd/{fd}"
    for argv in (["lsinitramfs", image], ["lsinitrd", "--list", image]):
        tool = find_tool(argv[0])
        if tool is None:
            continue
        listing = bytearray()
        output = tool_output(
            [tool, *argv[1:]],
            time.monotonic() + timeout,
            timeout,
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
        )
        try:
            with contextlib.closing(output):
                for piece in output:
                    listing += piece
                    if len(listing) > MAX_LISTING:
                        raise UnpackFailed(f"{argv[0]} printed more than {_size(MAX_LISTING)}")
        except (UnpackFailed, NoDecoder) as exc:
            why = str(exc)
            continue
        return listing.decode("utf-8", "replace").split()
    return why


def list_initramfs(tree: Tree, relative: str, limits: Limits = Limits()) -> Union[list[str], str]:
    """Every path in the tree's initramfs at `relative`, or a sentence saying why not.
    It is opened through the tree's one door (no link out of it, nothing but a regular
    file); from there on only that descriptor is used, by this reader and by the tools."""
    with tree.open_regular(relative) as fd:
        if fd is not None:
            return list_open_initramfs(fd, limits)
    why = tree.unreadable(relative, limits.max_size)
    return f"it is {why}" if why else "it is missing"


def list_open_initramfs(fd: int, limits: Limits = Limits()) -> Union[list[str], str]:
    """Every path in the initramfs open on `fd` (the caller closes it), or why not."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "it is not a regular file"
        if info.st_size > limits.max_size:
            return (
                f"it is {info.st_size >> 20} MiB, over the {limits.max_size >> 20} MiB read here"
            )
        if info.st_size == 0:
            return "it is empty"
        try:
            return _names(fd, info.st_size, limits)
        except NoDecoder as exc:
            listed = _with_lister(fd, limits.timeout)
            return listed if isinstance(listed, list) else f"{exc}, and {listed}"
    except (MalformedArchive, UnpackFailed) as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
