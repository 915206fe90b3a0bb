"""parse_link_messages: bounded on any bytes, exact on what the kernel sends.

The encoder here writes messages as <linux/netlink.h> lays them out (native byte
order, every message and attribute padded to 4 bytes), so a round trip proves
the parser reads the kernel's layout, and the broken variants prove its bounds.
"""

from __future__ import annotations

import struct
import time
from typing import List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import HostError
from azprov.host.netlink import LinkEvent, parse_link_messages
from azprov.host.netlink_messages import MAX_ATTRIBUTES, MAX_MESSAGES, dump_request, read_dump

RTM_NEWLINK, RTM_DELLINK = 16, 17
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE = 3, 4, 16
IFF_UP, IFF_LOOPBACK = 0x1, 0x8


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def attribute(kind: int, value: bytes) -> bytes:
    return pad(struct.pack("=HH", 4 + len(value), kind) + value)


def message(kind: int, payload: bytes, *, length: Optional[int] = None) -> bytes:
    header = struct.pack("=IHHII", 16 + len(payload) if length is None else length, kind, 0, 0, 0)
    return pad(header + payload)


def link_message(
    kind: int,
    index: int,
    *,
    name: Optional[bytes] = None,
    operstate: Optional[int] = None,
    flags: int = IFF_UP,
    extra: bytes = b"",
) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + extra
    if name is not None:
        body += attribute(IFLA_IFNAME, name)
    if operstate is not None:
        body += attribute(IFLA_OPERSTATE, bytes([operstate]))
    return message(kind, body)


def test_a_kernel_shaped_message_is_read() -> None:
    data = link_message(
        RTM_NEWLINK, 7, name=b"eth0\0", operstate=6, extra=attribute(IFLA_MTU, b"\xdc\x05\0\0")
    )
    assert parse_link_messages(data) == [LinkEvent("new", 7, "eth0", True, False)]


@pytest.mark.parametrize(
    ("operstate", "oper_up"),
    [(0, None), (1, False), (2, False), (3, False), (4, False), (5, False), (6, True)],
)
def test_every_operational_state_but_unknown_is_up_or_not(
    operstate: int, oper_up: Optional[bool]
) -> None:
    event = parse_link_messages(link_message(RTM_NEWLINK, 2, name=b"t0\0", operstate=operstate))
    assert event == [LinkEvent("new", 2, "t0", oper_up, False)]


@pytest.mark.parametrize(
    "raw",
    [
        b"eth0",  # no NUL
        b"\0",  # empty
        b"a" * 16 + b"\0",  # longer than IFNAMSIZ - 1
        b"et/h\0",
        b"et h\0",
        b"et:h\0",
        b"..\0",
        b"e\xffth\0",  # not UTF-8
        b"e\x07th\0",  # not printable
        b"eth0\0junk",  # something after the NUL
    ],
)
def test_a_name_the_kernel_would_not_allow_is_no_name(raw: bytes) -> None:
    [event] = parse_link_messages(link_message(RTM_DELLINK, 3, name=raw, operstate=2))
    assert event == LinkEvent("del", 3, None, False, False)


def test_other_messages_are_skipped_and_a_broken_attribute_drops_only_its_message() -> None:
    broken = message(RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 5, 0, 0) + b"\x40\0\x03\0eth")
    data = (
        message(NLMSG_NOOP, b"")
        + link_message(RTM_NEWLINK, 1, name=b"lo\0", flags=IFF_LOOPBACK | IFF_UP)
        + message(NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16)
        + broken
        + message(18, b"\0" * 16)  # RTM_GETLINK: a request, not an event
        + message(RTM_NEWLINK, b"\0" * 8)  # shorter than an ifinfomsg
        + link_message(RTM_DELLINK, 9, name=b"eth1\0")
        + message(NLMSG_DONE, b"\0\0\0\0")
    )
    assert parse_link_messages(data) == [
        LinkEvent("new", 1, "lo", None, True),
        LinkEvent("del", 9, "eth1", None, False),
    ]


@pytest.mark.parametrize("length", [0, 1, 15, 2**32 - 1, 10_000])
def test_a_length_below_the_header_or_past_the_buffer_ends_the_buffer(length: int) -> None:
    good = link_message(RTM_NEWLINK, 4, name=b"eth0\0")
    bad = message(RTM_NEWLINK, b"\0" * 32, length=length)
    assert parse_link_messages(good + bad + good) == [LinkEvent("new", 4, "eth0", None, False)]


def test_a_misaligned_length_is_padded_to_the_next_message() -> None:
    odd = message(NLMSG_NOOP, b"\x01\x02\x03")  # nlmsg_len 19, the next message at 20
    assert len(odd) == 20
    data = odd + link_message(RTM_NEWLINK, 4, name=b"eth0\0") + b"\0\0"  # a short tail
    assert parse_link_messages(data) == [LinkEvent("new", 4, "eth0", None, False)]


def test_at_most_max_messages_are_read_from_one_buffer() -> None:
    data = link_message(RTM_NEWLINK, 1, name=b"a\0") * (MAX_MESSAGES + 500)
    started = time.monotonic()
    assert len(parse_link_messages(data)) == MAX_MESSAGES
    assert time.monotonic() - started < 2


def test_attributes_past_the_limit_are_not_read() -> None:
    filler = attribute(IFLA_MTU, b"\0\0\0\0") * MAX_ATTRIBUTES
    late = link_message(RTM_NEWLINK, 1, name=b"late\0", extra=filler)
    early = message(
        RTM_NEWLINK,
        struct.pack("=BxHiII", 0, 1, 2, 0, 0) + attribute(IFLA_IFNAME, b"early\0") + filler,
    )
    assert [event.name for event in parse_link_messages(late + early)] == [None, "early"]


def test_a_dump_ends_at_done_and_an_error_reply_is_a_host_error() -> None:
    links: list[LinkEvent] = []
    assert not read_dump(link_message(RTM_NEWLINK, 1, name=b"lo\0"), links)
    assert read_dump(link_message(RTM_NEWLINK, 2, name=b"t0\0") + message(NLMSG_DONE, b""), links)
    assert [link.name for link in links] == ["lo", "t0"]
    with pytest.raises(HostError, match=r"\Athe kernel refused to list links: Operation not"):
        read_dump(message(NLMSG_ERROR, struct.pack("=i", -1) + dump_request()), links)
    assert struct.unpack_from("=IHH", dump_request()) == (32, 18, 0x301)


# A name as the kernel allows it: 1-15 bytes, no '/', ':' or white space.
NAMES: st.SearchStrategy[str] = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/:"),
    min_size=1,
    max_size=15,
).filter(lambda name: name not in (".", ".."))
EVENTS = st.tuples(
    st.sampled_from([RTM_NEWLINK, RTM_DELLINK]),
    st.integers(-(2**31), 2**31 - 1),
    st.none() | NAMES,
    st.none() | st.integers(0, 255),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=5),
)
Event = Tuple[int, int, Optional[str], Optional[int], bool, List[Tuple[int, bytes]]]


@given(st.lists(EVENTS, max_size=30), st.lists(st.integers(1, 15), max_size=5))
def test_encoded_events_round_trip(events: list[Event], noise_types: list[int]) -> None:
    data, expected = b"", []
    for kind, index, name, operstate, loopback, noise in events:
        # attributes of other types, before ours (the first IFNAME/OPERSTATE counts)
        extra = b"".join(attribute(t, v) for t, v in noise if t & 0x3FFF not in (3, 16))
        flags = IFF_LOOPBACK if loopback else 0
        raw_name = None if name is None else name.encode() + b"\0"
        data += link_message(
            kind, index, name=raw_name, operstate=operstate, flags=flags, extra=extra
        )
        oper_up = None if operstate in (None, 0) else operstate == 6
        expected.append(
            LinkEvent("new" if kind == RTM_NEWLINK else "del", index, name, oper_up, loopback)
        )
    for noise_type in noise_types:
        data += message(noise_type, b"\0" * 16)
    assert parse_link_messages(data) == expected


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_any_bytes_parse_quickly_without_an_exception(data: bytes) -> None:
    started = time.monotonic()
    events = parse_link_messages(data)
    assert time.monotonic() - started < 1
    assert len(events) <= MAX_MESSAGES
    assert all(event.name is None or 0 < len(event.name.encode()) < 16 for event in events)


@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.binary(max_size=64)))
)
def test_any_header_lengths_are_bounded(parts: list[tuple[int, int, bytes]]) -> None:
    data = b"".join(
        struct.pack("=IHHII", length, kind, 0, 0, 0) + body for length, kind, body in parts
    )
    started = time.monotonic()
    assert len(parse_link_messages(data)) <= len(parts)
    assert time.monotonic() - started < 1


@given(st.binary(max_size=512), st.integers(-(2**31), 2**31 - 1))
def test_a_dump_reply_of_any_bytes_is_read_or_refused_with_a_host_error(
    data: bytes, code: int
) -> None:
    links: list[LinkEvent] = []
    for reply in (data, message(NLMSG_ERROR, struct.pack("=i", code)) + data):
        try:
            read_dump(reply, links)
        except HostError as error:
            assert "\n" not in str(error)
