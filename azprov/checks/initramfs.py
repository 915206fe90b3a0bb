"""Listing an initramfs: concatenated newc cpio archives, each possibly compressed.

gzip, xz/lzma and bzip2 come from the stdlib; zstd and lz4 (Debian 12 builds
zstd) need their tools, or the distribution's lister (`lsinitramfs`, `lsinitrd`).
The image is hostile until bounded: the file is read in chunks by offset (holes
of a sparse file skipped unread), every archive is parsed as it streams out of
its decompressor (nothing unpacked is kept but the names), every cpio header is
checked field by field, and the unpacked size, the entry count and the wall time
are capped. Whatever passes a bound is `unknown:` with the reason, never a guess.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import errno
import fcntl
import lzma
import os
import re
import selectors
import signal
import stat
import subprocess
import time
import zlib
from pathlib import Path
from typing import Generator, Union

from azprov.checks.tools import find_tool
from azprov.errors import AzprovError

MAX_SIZE = 512 << 20  # the file (the largest real ones are a few hundred MiB)
MAX_UNPACKED = 1 << 30  # its compressed archive, unpacked (real ones: 100-400 MiB)
MAX_ENTRIES = 200_000  # real ones hold a few thousand files
MAX_NAME = 4096  # PATH_MAX, with the NUL: the kernel's own bound for an initramfs name
MAX_LISTING = 64 << 20  # a lister's output (a few hundred KiB for a real image)
TIMEOUT = 60
_TOOLS = {
    # zstd itself refuses frames whose window needs more than 128 MiB of memory.
    b"\x28\xb5\x2f\xfd": ["zstd", "-dcq"],
    b"\x02\x21\x4c\x18": ["lz4", "-dcq"],
}
_CHUNK = 1 << 20
_NONZERO = re.compile(rb"[^\x00]")
_MAGICS = (b"070701", b"070702")
_FIELDS = [
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
    "namesize",
    "check",
]
_HEX_FIELDS = re.compile(rb"[0-9A-Fa-f]{104}")
_HEX_FIELD = re.compile(rb"[0-9A-Fa-f]{8}")
_TRAILER = b"TRAILER!!!\0"
_HEADER_SIZE = 110
_BETWEEN, _HEADER, _NAME, _DATA = "between", "header", "name", "data"


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one listing may cost; tests lower them to keep their bombs small."""

    max_size: int = MAX_SIZE
    max_unpacked: int = MAX_UNPACKED
    max_entries: int = MAX_ENTRIES
    timeout: float = TIMEOUT


class InitramfsUnreadable(AzprovError):
    """The initramfs cannot be listed; the message is the reason `unknown:` shows."""


class MalformedArchive(InitramfsUnreadable):
    """A cpio archive that breaks the newc format (or a bound on it): refused, never guessed."""


class UnpackFailed(InitramfsUnreadable):
    """The compressed data is corrupt, cut short, or passed the size or time cap."""


class NoDecoder(InitramfsUnreadable):
    """Nothing here reads this compression: the distribution's lister may."""


def _padded(size: int) -> int:
    return (size + 3) & ~3


class NewcReader:
    """The names in newc cpio archives fed in pieces of any size.

    Between archives, zero bytes are skipped (padding); `feed` stops right after
    an archive's trailer so a caller reading a file can look at what follows.
    At most one header and one name are held; a file's data is passed over, not kept.
    """

    def __init__(
        self, names: list[str], max_entries: int = MAX_ENTRIES, position: int = 0
    ) -> None:
        self.names = names  # shared by the readers of one image: the cap is on them all
        self.max_entries = max_entries
        self.position = position  # of the next byte, as reasons name it
        self._state = _BETWEEN
        self._pending = bytearray()  # the part of a header or a name read so far
        self._wanted = 0  # the whole header's or padded name's length
        self._name_size = 0
        self._file_size = 0
        self._skip = 0  # file data and padding still to pass over
        self._trailer = False  # the entry being read ends its archive
        self._entry_at = 0
        self._entry_number = 0  # of the entry being read, counting every header in the stream

    @property
    def between(self) -> bool:
        """Outside any archive: only zeros or a new archive may follow."""
        return self._state == _BETWEEN

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> int:
        """Read from `data`; how many bytes were used (all, unless an archive ended)."""
        view = memoryview(data)
        used = 0
        while used < len(view):
            state, before = self._state, used
            if state == _BETWEEN:
                found = _NONZERO.search(view, used)
                used = len(view) if found is None else found.start()
                self.position += used - before
                if found is not None:
                    self._start_entry()
            elif state == _DATA:
                step = min(self._skip, len(view) - used)
                used += step
                if self._skipped(step):
                    return used
            else:
                step = min(self._wanted - len(self._pending), len(view) - used)
                self._pending += view[used : used + step]
                used += step
                self.position += step
                if state == _HEADER and len(self._pending) >= 6:
                    self._magic(self._pending[:6])  # refuse junk at once, not 110 bytes later
                if len(self._pending) == self._wanted and self._parsed():
                    return used
            if used == before and self._state == state:
                # Each pass uses a byte or changes state: anything else would loop forever.
                raise MalformedArchive(f"no progress at byte {self.position}")
        return used

    def skippable(self) -> int:
        """File data still to pass over: a caller holding a file may jump it unread."""
        return self._skip if self._state == _DATA else 0

    def skip(self, count: int) -> None:
        """Pass over `count` (at most `skippable()`) bytes of file data without reading them."""
        self._skipped(min(count, self.skippable()))

    def close(self) -> None:
        """The stream has ended: it must not end inside an archive."""
        if self._state != _BETWEEN:
            raise MalformedArchive(
                f"not a newc cpio archive: it ends inside entry {self._entry_number}"
                f" (at byte {self._entry_at})"
            )

    def _start_entry(self) -> None:
        self._state = _HEADER
        self._entry_at = self.position
        self._entry_number += 1
        self._pending.clear()
        self._wanted = _HEADER_SIZE

    def _skipped(self, count: int) -> bool:
        """`count` bytes of data passed over; True when that ended the archive."""
        self._skip -= count
        self.position += count
        if self._skip:
            return False
        if self._trailer:
            self._trailer = False
            self._state = _BETWEEN
            return True
        self._start_entry()
        return False

    def _parsed(self) -> bool:
        """A whole header or name is pending: check it, move on; True when the archive ended."""
        pending = bytes(self._pending)
        self._pending.clear()
        if self._state == _HEADER:
            self._name_size, self._file_size = self._header(pending)
            self._state = _NAME
            self._wanted = _padded(_HEADER_SIZE + self._name_size) - _HEADER_SIZE
            return False
        name = pending[: self._name_size]
        if name[-1:] != b"\0":
            raise self._refuse("has a name without its NUL")
        self._trailer = name == _TRAILER
        if not self._trailer:
            if len(self.names) >= self.max_entries:
                raise MalformedArchive(f"it holds more than {self.max_entries} entries")
            self.names.append(name[:-1].decode("utf-8", "replace"))
        self._state = _DATA
        self._skip = _padded(self._file_size)
        return self._skipped(0)

    def _refuse(self, what: str) -> MalformedArchive:
        return MalformedArchive(
            f"not a newc cpio archive: entry {self._entry_number} at byte {self._entry_at} {what}"
        )

    def _magic(self, magic: Union[bytes, bytearray]) -> None:
        if magic not in _MAGICS:
            raise self._refuse(f"starts with '{_shown(bytes(magic))}', not 070701 or 070702")

    def _header(self, header: bytes) -> tuple[int, int]:
        """(namesize, filesize) of a header whose every field must be 8 hex digits."""
        self._magic(header[:6])
        if not _HEX_FIELDS.fullmatch(header, 6):
            for index, field in enumerate(_FIELDS):
                raw = header[6 + 8 * index : 14 + 8 * index]
                if not _HEX_FIELD.fullmatch(raw):
                    raise self._refuse(f"has {field} '{_shown(raw)}', not 8 hex digits")
        name_size = int(header[94:102], 16)
        if not 1 <= name_size <= MAX_NAME:
            raise self._refuse(f"has namesize {name_size}, outside 1..{MAX_NAME}")
        return name_size, int(header[54:62], 16)


def _shown(raw: bytes) -> str:
    """Header bytes as printable text (`\\x00` for a NUL), for a one-line reason."""
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii")


def cpio_names(data: Union[bytes, bytearray], max_entries: int = MAX_ENTRIES) -> list[str]:
    """The names in an unpacked stream of newc archives (zero padding between them allowed)."""
    reader = NewcReader([], max_entries)
    view = memoryview(data)
    while view:
        view = view[reader.feed(view) :]
    reader.close()
    return reader.names


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and not count % (1 << 20) else f"{count} bytes"


def _inflated(fd: int, offset: int, end: int) -> Generator[bytes, None, None]:
    """One gzip member from `offset`, in output pieces of at most a chunk."""
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for piece in _pieces(fd, offset, end):
        while not unzip.eof:
            try:
                out = unzip.decompress(piece, _CHUNK)
            except zlib.error as exc:
                raise UnpackFailed(f"corrupt compressed data ({exc})") from None
            if out:
                yield out
            piece = unzip.unconsumed_tail
            if not piece and len(out) < _CHUNK:
                break  # this piece is used up and nothing is held back: read on
        if unzip.eof:
            return
    raise UnpackFailed("truncated compressed data")


def _unstreamed(fd: int, offset: int, end: int, xz: bool) -> Generator[bytes, None, None]:
    """An xz/lzma or bzip2 stream from `offset`, in output pieces of at most a chunk."""
    unpack = lzma.LZMADecompressor() if xz else bz2.BZ2Decompressor()
    for piece in _pieces(fd, offset, end):
        while not unpack.eof:
            try:
                out = unpack.decompress(piece, _CHUNK)
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


def _pieces(fd: int, offset: int, end: int) -> Generator[bytes, None, None]:
    while offset < end:
        piece = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not piece:
            return  # the file shrank while being read
        offset += len(piece)
        yield piece


def _tool_output(
    argv: list[str], deadline: float, timeout: float, stdin: int, pass_fds: tuple[int, ...] = ()
) -> Generator[bytes, None, None]:
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
        fcntl.fcntl(tool.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), _CHUNK)
    try:
        with selectors.DefaultSelector() as ready:
            ready.register(tool.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not ready.select(left):
                    raise UnpackFailed(f"{name} took more than {timeout:g} s")
                out = os.read(tool.stdout.fileno(), _CHUNK)
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


def _unpacked(
    fd: int, offset: int, end: int, deadline: float, timeout: float
) -> Generator[bytes, None, None]:
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
            return _tool_output([tool, *argv[1:]], deadline, timeout, stdin=fd)
    raise NoDecoder(f"unknown compression (starts {magic[:4].hex()})")


def _read_compressed(fd: int, offset: int, end: int, names: list[str], limits: Limits) -> None:
    """Parse the compressed archive at `offset` as it is unpacked, within the caps."""
    deadline = time.monotonic() + limits.timeout
    unpacked = 0
    reader = NewcReader(names, limits.max_entries)  # positions in reasons: the unpacked stream's
    pieces = _unpacked(fd, offset, end, deadline, limits.timeout)
    with contextlib.closing(pieces):  # on any exit: a tool is killed and reaped now
        for piece in pieces:
            unpacked += len(piece)
            if unpacked > limits.max_unpacked:
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
        for piece in _pieces(fd, offset, data_end):
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
            piece = os.pread(fd, min(_CHUNK, end - offset), offset)
            if not piece:
                break
            offset += reader.feed(piece)
        if reader.between:
            return offset
    reader.close()
    return offset


def list_open_initramfs(fd: int, limits: Limits = Limits()) -> list[str]:
    """Every path in the initramfs open on `fd` (a regular file; the caller closes it).

    Raises InitramfsUnreadable (NoDecoder when a distribution's lister may do better).
    """
    size = os.fstat(fd).st_size
    names: list[str] = []
    offset = 0
    while offset < size:
        if os.pread(fd, 6, offset) in _MAGICS:
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
        pieces = _tool_output(
            [tool, *argv[1:]],
            time.monotonic() + timeout,
            timeout,
            stdin=subprocess.DEVNULL,
            pass_fds=(fd,),
        )
        try:
            with contextlib.closing(pieces):
                for piece in pieces:
                    listing += piece
                    if len(listing) > MAX_LISTING:
                        raise UnpackFailed(f"{argv[0]} printed more than {_size(MAX_LISTING)}")
        except InitramfsUnreadable as exc:
            why = str(exc)
            continue
        return listing.decode("utf-8", "replace").split()
    return why


def _open_image(path: Path) -> int:
    """The image, opened read-only; a link here is refused (the tree resolved its own)."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)


def list_initramfs(path: Path, limits: Limits = Limits()) -> Union[list[str], str]:
    """Every path in the initramfs, or a sentence saying why it could not be read."""
    try:
        fd = _open_image(path)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
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
            return list_open_initramfs(fd, limits)
        except NoDecoder as exc:
            listed = _with_lister(fd, limits.timeout)
            return listed if isinstance(listed, list) else f"{exc}, and {listed}"
        except InitramfsUnreadable as exc:
            return str(exc)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    finally:
        os.close(fd)
