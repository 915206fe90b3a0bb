"""Reading newc cpio archives (what an initramfs holds) from hostile bytes.

Every header field must be 8 hex digits (`int(..., 16)` would also take a sign,
spaces or underscores: a negative size once walked a reader back to its start
forever); a name is 1 to PATH_MAX bytes ending in its NUL; the entry count is
capped; each pass of the reader uses a byte or changes state. What breaks a rule
is a MalformedArchive naming the entry, its byte offset and the field.
"""

from __future__ import annotations

import re
from typing import Union

from azprov.errors import AzprovError

MAX_ENTRIES = 200_000  # real ones hold a few thousand files
MAX_NAME = 4096  # PATH_MAX, with the NUL: the kernel's own bound for an initramfs name
MAGICS = (b"070701", b"070702")
_NONZERO = re.compile(rb"[^\x00]")
_FIELDS: tuple[str, ...] = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize")
_FIELDS += ("devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")
_HEX_FIELDS = re.compile(rb"[0-9A-Fa-f]{104}")
_HEX_FIELD = re.compile(rb"[0-9A-Fa-f]{8}")
_TRAILER = b"TRAILER!!!\0"
_HEADER_SIZE = 110
_BETWEEN, _HEADER, _NAME, _DATA = "between", "header", "name", "data"


class MalformedArchive(AzprovError):
    """A cpio archive that breaks the newc format (or a bound on it): refused, never guessed."""


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
        if magic not in MAGICS:
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
