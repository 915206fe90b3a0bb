"""rtnetlink link messages, bytes to `LinkEvent`: a pure parser, bounded on any input.

A datagram holds netlink messages (nlmsghdr, then for a link an ifinfomsg and
rtattrs), each padded to 4 bytes. A message length shorter than its header or
reaching past the datagram ends that datagram; an attribute length that is
broken drops its message whole. No input makes the parser raise, loop without
moving on, or read more than MAX_MESSAGES messages of MAX_ATTRIBUTES attributes;
only a dump's NLMSG_ERROR reply (the kernel refusing the request) is a HostError.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Iterator, Literal, NamedTuple, Optional, Tuple

from azprov.errors import HostError

# <linux/rtnetlink.h>, <linux/netlink.h>, <linux/if_link.h>, <linux/if.h>
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_OPERSTATE = 3, 16
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6  # NOTPRESENT 1, DOWN 2, LOWERLAYERDOWN 3, TESTING 4, DORMANT 5
IFF_LOOPBACK = 0x8
IFNAMSIZ = 16  # a name's 15 bytes and its NUL

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), device type, index, flags, change mask
_RTATTR = struct.Struct("=HH")  # length, type
_ERROR_CODE = struct.Struct("=i")

# A real datagram carries one link's message (a dump: a few dozen) with about
# 60 attributes; the limits are far beyond that and keep a broken one cheap.
MAX_MESSAGES = 1024
MAX_ATTRIBUTES = 512


class LinkEvent(NamedTuple):
    """One RTM_NEWLINK ("new": a link appeared or changed) or RTM_DELLINK ("del").

    `oper_up` is IFLA_OPERSTATE: True for UP, False for any other state the
    driver reports (DOWN, LOWERLAYERDOWN, DORMANT, …), None when the message has
    none or says UNKNOWN (a driver that tracks no state, such as loopback's).
    `name` is None when IFLA_IFNAME is missing or not a valid interface name.
    """

    kind: Literal["new", "del"]
    ifindex: int
    name: Optional[str]
    oper_up: Optional[bool]
    loopback: bool = False


def parse_link_messages(data: bytes) -> list[LinkEvent]:
    """The link events in one datagram from a netlink socket, in order.

    Messages of other types (NOOP, DONE, ERROR, …) are skipped: an event
    socket gets no replies, and `list_links` reads its own. Never raises.
    """
    events = []
    for kind, payload in _messages(data):
        event = _link_event(kind, payload)
        if event is not None:
            events.append(event)
    return events


def _align(length: int) -> int:
    return (length + 3) & ~3


def _messages(data: bytes) -> Iterator[Tuple[int, bytes]]:
    """(type, payload) of each whole message, at most MAX_MESSAGES. A length shorter
    than the header or reaching past the datagram ends it (a zero length would
    otherwise never move on)."""
    offset = 0
    for _ in range(MAX_MESSAGES):
        if offset + _NLMSGHDR.size > len(data):
            return
        length, kind, _flags, _sequence, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, data[offset + _NLMSGHDR.size : offset + length]
        offset += _align(length)


def _link_event(kind: int, payload: bytes) -> Optional[LinkEvent]:
    if kind not in (RTM_NEWLINK, RTM_DELLINK) or len(payload) < _IFINFOMSG.size:
        return None
    _family, _device_type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attributes = _attributes(payload, _IFINFOMSG.size)
    if attributes is None:
        return None
    return LinkEvent(
        "new" if kind == RTM_NEWLINK else "del",
        index,
        _interface_name(attributes.get(IFLA_IFNAME)),
        _oper_up(attributes.get(IFLA_OPERSTATE)),
        bool(flags & IFF_LOOPBACK),
    )


def _attributes(payload: bytes, offset: int) -> Optional[dict[int, bytes]]:
    """The first value of each top-level attribute type; None (the message is
    dropped whole) when an attribute's length is broken."""
    found: dict[int, bytes] = {}
    for _ in range(MAX_ATTRIBUTES):
        if offset + _RTATTR.size > len(payload):
            break  # the end, or padding after the last attribute
        length, kind = _RTATTR.unpack_from(payload, offset)
        if length < _RTATTR.size or offset + length > len(payload):
            return None
        found.setdefault(kind & NLA_TYPE_MASK, payload[offset + _RTATTR.size : offset + length])
        offset += _align(length)
    return found


def _interface_name(value: Optional[bytes]) -> Optional[str]:
    """The name as the kernel allows it (dev_valid_name): 1–15 bytes then NUL, no
    '/', ':' or white space; anything else is no name at all."""
    if value is None:
        return None
    end = value.find(b"\0")
    if not 0 < end < IFNAMSIZ or value[end:].strip(b"\0"):
        return None
    try:
        name = value[:end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name in (".", "..") or not name.isprintable():
        return None
    if any(c.isspace() or c in "/:" for c in name):
        return None
    return name


def _oper_up(value: Optional[bytes]) -> Optional[bool]:
    if value is None or len(value) != 1 or value[0] == IF_OPER_UNKNOWN:
        return None
    return value[0] == IF_OPER_UP


def dump_request(sequence: int = 1) -> bytes:
    """An RTM_GETLINK request for every link (its replies are RTM_NEWLINK, then NLMSG_DONE)."""
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + _IFINFOMSG.size, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0
    )
    return header + _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)


def read_dump(data: bytes, links: list[LinkEvent]) -> bool:
    """Add the links in one datagram of a dump to `links`; True at its end."""
    for kind, payload in _messages(data):
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR and len(payload) >= _ERROR_CODE.size:
            code = _ERROR_CODE.unpack_from(payload)[0]
            if code:  # 0 would be an acknowledgement, which a dump does not ask for
                raise HostError(f"the kernel refused to list links: {_error_text(-code)}")
        event = _link_event(kind, payload)
        if event is not None:
            links.append(event)
    return False


def _error_text(number: int) -> str:
    try:
        return os.strerror(number)
    except (OverflowError, ValueError):
        return f"error {number}"
