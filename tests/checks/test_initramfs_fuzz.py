"""Properties of the initramfs reader over hostile input: it returns names or raises its own
MalformedArchive (the listing: a reason string), within a time bound, and nothing else."""

from __future__ import annotations

import gzip
import lzma
import tempfile
from pathlib import Path
from typing import Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.checks.cpio import MalformedArchive, NewcReader, cpio_names
from azprov.checks.initramfs import Limits, list_initramfs
from azprov.checks.tree import Tree
from azprov.host.root import TargetRoot
from tests.checks.trees import newc

FAST = settings(max_examples=200, deadline=500, suppress_health_check=[HealthCheck.too_slow])
SMALL = Limits(max_unpacked=1 << 20, max_entries=1000, timeout=5)

# Eight characters that Python's int(…, 16) would take and the format does not (signs,
# spaces, underscores), mixed with plain hex.
_FIELD_TEXT = st.text(alphabet="0123456789abcdefABCDEF-+ _xg\0", min_size=8, max_size=8)
_FIELD_VALUE = st.integers(0, 0xFFFFFFFF).map(lambda value: f"{value:08X}")


@st.composite
def near_valid_entries(draw: st.DrawFn) -> bytes:
    """newc entries with a field or two wrong (any value, any 8 characters), in a stream that
    may be cut anywhere: most get past a few headers before something is refused."""
    out = bytearray(b"\0" * draw(st.sampled_from([0, 0, 4, 512])))
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.binary(max_size=40)) + draw(st.sampled_from([b"\0", b"\0", b"", b"\0\0"]))
        data = draw(st.binary(max_size=64))
        fields = [f"{draw(st.integers(0, 300)):08X}" for _ in range(13)]
        fields[6], fields[11] = f"{len(data):08X}", f"{len(name):08X}"
        for index in draw(st.lists(st.integers(0, 12), max_size=2)):
            fields[index] = draw(st.one_of(_FIELD_VALUE, _FIELD_TEXT))
        magic = draw(st.sampled_from([b"070701", b"070701", b"070702", b"070707", b"07070"]))
        entry = magic + "".join(fields).encode("latin-1") + name
        entry += b"\0" * (-len(entry) % 4) + data + b"\0" * (-len(data) % 4)
        out += entry
    if draw(st.booleans()):
        out += newc({})  # a trailer
    cut = draw(st.one_of(st.none(), st.integers(0, len(out))))
    return bytes(out if cut is None else out[:cut])


def outcome(data: bytes, pieces: Optional[list[int]] = None) -> object:
    """The names, or the reason refused; fed whole, or in pieces of the given sizes."""
    reader = NewcReader([], max_entries=1000)
    try:
        view = memoryview(data)
        for size in pieces or []:
            piece = view[:size]
            while piece:
                piece = piece[reader.feed(piece) :]
            view = view[size:]
        while view:
            view = view[reader.feed(view) :]
        reader.close()
    except MalformedArchive as exc:
        return str(exc)
    return reader.names


def names_or_refusal(data: bytes) -> None:
    try:
        names = cpio_names(data, max_entries=1000)
    except MalformedArchive as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(names, list) and all(isinstance(name, str) for name in names)


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_give_names_or_a_malformed_archive(data: bytes) -> None:
    names_or_refusal(data)


@FAST
@given(near_valid_entries())
def test_near_valid_headers_give_names_or_a_malformed_archive(data: bytes) -> None:
    names_or_refusal(data)


@FAST
@given(st.data(), near_valid_entries() | st.binary(max_size=1024))
def test_pieces_of_any_size_read_as_the_whole(data: st.DataObject, stream: bytes) -> None:
    pieces = data.draw(st.lists(st.integers(1, 300), max_size=20))
    assert outcome(stream, pieces) == outcome(stream)


_NAMES: st.SearchStrategy[str] = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=60,
).filter(lambda name: name != "TRAILER!!!" and len(name.encode()) < 4096)


@FAST
@given(
    st.dictionaries(_NAMES, st.binary(max_size=300), max_size=12),
    st.lists(st.integers(1, 500), max_size=10),
    st.sampled_from([0, 4, 512]),
)
def test_a_valid_archive_gives_back_its_names(
    entries: dict[str, bytes], pieces: list[int], padding: int
) -> None:
    archive = newc(entries)
    assert outcome(archive + b"\0" * padding + archive, pieces) == [*entries, *entries]


@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["raw", "gzip", "xz", "early+gzip", "bytes"]),
    near_valid_entries() | st.binary(max_size=1024),
)
def test_any_image_file_gives_names_or_a_reason(packing: str, payload: bytes) -> None:
    if packing == "gzip":
        payload = gzip.compress(payload, 1)
    elif packing == "xz":
        payload = lzma.compress(payload)
    elif packing == "early+gzip":
        payload = newc({"early": b"x"}) + b"\0" * 8 + gzip.compress(payload, 1)[:-3]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "initrd.img").write_bytes(payload)
        found = list_initramfs(Tree(TargetRoot(folder)), "initrd.img", SMALL)
    assert isinstance(found, (list, str))
    if isinstance(found, str):
        assert found and "\n" not in found
