"""Review of the damaged-download check (verify_zip) as a hostile package would meet it.

Two zip bombs got past the caps: a central directory larger than
MAX_DIRECTORY_BYTES whose end record hides its size behind a second end-record
signature (zipfile and azprov's own check read different records), and a bzip2
member that zipfile inflates whole, whatever size it declares, in one call.
"""

from __future__ import annotations

import bz2
import io
import struct
import tempfile
import time
import tracemalloc
import zipfile
import zlib

import pytest

from azprov.errors import InvalidInput
from azprov.extensions.artifacts import DamagedDownload
from azprov.extensions.packages import MAX_DIRECTORY_BYTES, verify_zip

END = b"PK\x05\x06"


def _directory_entry(name: bytes) -> bytes:
    """A central directory entry: a stored, empty file named `name`."""
    header = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0
    )
    return header + name


def _zip_with_directory(entries: int, offset_field: bytes) -> bytes:
    directory = b"".join(_directory_entry(b"%07x" % i) for i in range(entries))
    end = struct.pack("<4s4HL", END, 0, 0, 1, 1, len(directory)) + offset_field + b"\0\0"
    return directory + end


def test_a_central_directory_over_its_cap_is_refused_before_zipfile_reads_it() -> None:
    # The end record's offset field holds the bytes of the end record's own signature:
    # the last "PK\5\6" in the file is then 6 bytes from its end, and the size check
    # gave up there, while zipfile reads the real record (the last 22 bytes).
    entries = 150_000  # 52 bytes each: 7.8 MB, over MAX_DIRECTORY_BYTES (5.1 MB)
    package = _zip_with_directory(entries, offset_field=END)
    assert len(package) > MAX_DIRECTORY_BYTES
    began = time.monotonic()
    with pytest.raises(InvalidInput, match="central directory"):
        verify_zip(io.BytesIO(package), "Hostile.Handler", max_unpacked=2**30)
    assert time.monotonic() - began < 1.0


def test_a_zip64_record_other_than_the_locators_is_checked_too() -> None:
    # zipfile (3.9-3.13) reads the zip64 end record just before its locator, whatever
    # the locator's offset says: the check must not read only the one the locator names.
    directory = b"".join(_directory_entry(b"%07x" % i) for i in range(150_000))
    record = "<4sQ2H2L4Q"
    # Where the locator points (offset 0): a small directory. Just before the locator:
    # the real one, 7.8 MB of directory starting after the decoy.
    decoy = struct.pack(record, b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, 0, 0)
    real = struct.pack(record, b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 1, len(directory), 56)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    end = struct.pack("<4s4H2LH", END, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    package = decoy + directory + real + locator + end
    began = time.monotonic()
    with pytest.raises(InvalidInput, match="central directory"):
        verify_zip(io.BytesIO(package), "Hostile.Handler", max_unpacked=2**30)
    assert time.monotonic() - began < 1.0


def test_a_legitimate_zip64_package_still_passes() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        info = zipfile.ZipInfo("HandlerManifest.json")
        archive.writestr(info, b"[]")
        with archive.open("bin/big", "w", force_zip64=True) as member:
            member.write(b"x" * 1000)
    verify_zip(io.BytesIO(buffer.getvalue()), "Fine.Handler", max_unpacked=2**20)


def _bzip2_bomb(inflated: int, declared: int) -> bytes:
    """One bzip2 member: a stream of `inflated` zero bytes declared `declared` bytes long,
    with the CRC of its first `declared` bytes (zipfile stops reading there)."""
    stream = bz2.compress(b"\0" * inflated)
    name = b"HandlerManifest.json"
    crc = zlib.crc32(b"\0" * declared)
    method = zipfile.ZIP_BZIP2
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 46, 0, method, 0, 0, crc, len(stream), declared, len(name), 0
    )
    entry = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02", 46, 46, 0, method, 0, 0, crc, len(stream), declared, len(name),
        0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    local += name + stream
    entry += name
    end = struct.pack("<4s4H2LH", END, 0, 0, 1, 1, len(entry), len(local), 0)
    return local + entry + end


def test_a_bzip2_member_is_not_inflated_past_the_unpacking_cap() -> None:
    # 64 MiB of zeros in 70-odd bytes; the cap is 1 MiB. bzip2 compresses zeros about a
    # million to one, so a 40 kB member of this kind is tens of gigabytes in one call.
    package = _bzip2_bomb(64 * 1024 * 1024, 16)
    assert len(package) < 1024
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput):
            verify_zip(io.BytesIO(package), "Hostile.Handler", max_unpacked=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_an_unsupported_compression_method_is_the_packages_own_failure() -> None:
    # Whole, but zipfile cannot read it (method 9, deflate64): were it a damaged download
    # it would be fetched again from both channels every round, for ever.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("HandlerManifest.json", b"[]")
    data = bytearray(buffer.getvalue())
    for signature, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = data.index(signature)
        data[start + at : start + at + 2] = struct.pack("<H", 9)
    with pytest.raises(InvalidInput, match="compress"):
        verify_zip(io.BytesIO(bytes(data)), "Odd.Handler", max_unpacked=2**20)


def test_a_zip64_locator_with_no_room_for_its_record_is_a_damaged_download() -> None:
    # 42 bytes: a locator at the very start, so "the record just before it" would be at
    # -56: a seek there is an OSError on a real file, which no caller expects.
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    end = struct.pack("<4s4H2LH", END, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with tempfile.TemporaryFile() as package:
        package.write(locator + end)
        package.seek(0)
        with pytest.raises(DamagedDownload):
            verify_zip(package, "Tiny.Handler", max_unpacked=2**20)
