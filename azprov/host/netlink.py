"""Network link events from the kernel (rtnetlink), for pre-provisioned VM pools.

In a pool the platform hands a VM over through its NIC: a Running pool's NIC
goes down and up again (the switch to the customer's network); a Savable
pool's NIC is removed and new ones are hot-attached. The watcher's socket is
opened before Ready is reported, so an event that comes between then and the
wait is queued in it and still counts.

The kernel is this socket's only peer, but what it hands over is parsed with
bounds all the same: a broken length ends that buffer, never the process, and
nothing here raises on any bytes. When the socket's buffer overflowed (ENOBUFS)
the links' current state is asked for by an RTM_GETLINK dump rather than read
from /sys/class/net, which shows the network namespace sysfs was mounted in,
not necessarily the socket's.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from typing import Collection, Iterator, NamedTuple, Optional, Union

from azprov.errors import HostError
from azprov.host.netlink_messages import LinkEvent, dump_request, parse_link_messages, read_dump

__all__ = [
    "LinkEvent",
    "LinkWaitTimeout",
    "LinkWatcher",
    "list_links",
    "parse_link_messages",
]

log = logging.getLogger(__name__)

RTMGRP_LINK = 1  # <linux/rtnetlink.h>
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_SIZE = 1 << 16  # the kernel's largest rtnetlink datagram is below 32 KiB
# Room for about 500 queued link messages: a pool VM waits hours for a handful.
RECEIVE_BUFFER = 1 << 20
LIST_TIMEOUT = 5.0
LIST_MAX_RECEIVES = 4096
# Datagrams read after a loss before the links are listed: a full buffer holds fewer.
LOSS_DRAIN_MAX = 4096


class LinkWaitTimeout(HostError):
    """A wait for a link event ended at its time limit."""

    reason = "link_wait_timeout"


def _open_socket(groups: int, receive_buffer: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError as error:
        raise HostError(
            f"cannot open a netlink socket for link events: {_reason(error)}"
        ) from None
    try:
        try:  # as root beyond net.core.rmem_max; else up to it
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((0, groups))
    except OSError as error:
        sock.close()
        raise HostError(
            f"cannot listen for link events on a netlink socket: {_reason(error)}"
        ) from None
    return sock


def _reason(error: OSError) -> str:
    return os.strerror(error.errno) if error.errno else str(error)


def list_links(timeout: float = LIST_TIMEOUT) -> list[LinkEvent]:
    """Every link in this network namespace now, each as a "new" event (RTM_GETLINK dump)."""
    deadline = time.monotonic() + timeout
    links: list[LinkEvent] = []
    with _open_socket(0, RECEIVE_BUFFER) as sock:
        try:
            sock.sendto(dump_request(), (0, 0))
            for _ in range(LIST_MAX_RECEIVES):
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                if read_dump(sock.recv(RECEIVE_SIZE), links):
                    return links
        except socket.timeout:
            pass
        except OSError as error:
            raise HostError(f"cannot list the network links: {_reason(error)}") from None
    raise HostError(f"the kernel's list of network links did not end within {timeout:g} s")


class _Resync(NamedTuple):
    """Events were lost: the links as they are now."""

    links: list[LinkEvent]


class LinkWatcher:
    """A netlink socket on RTMGRP_LINK, open from construction to `close()` (or the
    end of its `with`). Open it before the event it waits for can happen."""

    def __init__(self, *, receive_buffer: int = RECEIVE_BUFFER) -> None:
        self._sock = _open_socket(RTMGRP_LINK, receive_buffer)

    def __enter__(self) -> LinkWatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def wait_down_then_up(self, name: str, timeout: Optional[float] = None) -> None:
        """Return once link `name` was seen not up (or removed) and then up."""
        what = f"link {name} to go down and up again"
        log.info("Waiting for %s (%s).", what, _limit(timeout))
        seen_down = False
        for item in self._events(what, timeout):
            if isinstance(item, _Resync):
                now = next((link for link in item.links if link.name == name), None)
                if now is None or now.oper_up is False:
                    seen_down = True
                elif now.oper_up:
                    log.warning(
                        "Link %s is up now; %s, so a bounce that was lost is taken as seen.",
                        name,
                        "it went down before" if seen_down else "it may have gone down unseen",
                    )
                    return
            elif item.name == name and (item.kind == "del" or item.oper_up is False):
                if not seen_down:
                    log.info("Saw link %s go down (%s).", name, _state(item))
                seen_down = True
            elif item.name == name and item.oper_up and seen_down:
                log.info("Saw link %s come up again (index %d).", name, item.ifindex)
                return

    def wait_removed(
        self, name: str, timeout: Optional[float] = None, quiet: bool = False
    ) -> None:
        """Return once link `name` is removed (at once when no link has that name).
        `quiet`: a short wait of a loop that says what it waits for itself (debug only)."""
        what = f"link {name} to be removed"
        log.log(
            logging.DEBUG if quiet else logging.INFO, "Waiting for %s (%s).", what, _limit(timeout)
        )
        if all(link.name != name for link in list_links()):
            log.info("Link %s is gone already.", name)
            return
        for item in self._events(what, timeout):
            if isinstance(item, _Resync) and all(link.name != name for link in item.links):
                log.info("Link %s is gone (its removal was among the lost events).", name)
                return
            if isinstance(item, LinkEvent) and item.kind == "del" and item.name == name:
                log.info("Saw link %s removed (index %d).", name, item.ifindex)
                return

    def wait_new_link(self, known: Collection[str], timeout: Optional[float] = None) -> str:
        """The name of the next link (not loopback) that appears or changes whose name
        is not in `known`."""
        known = frozenset(known)
        what = (
            f"a network link other than {', '.join(sorted(known))}"
            if known
            else "a new network link"
        )
        log.info("Waiting for %s (%s).", what, _limit(timeout))
        for item in self._events(what, timeout):
            found = item.links if isinstance(item, _Resync) else [item]
            for link in found:
                if link.name is not None and _is_new(link, known):
                    log.info("Saw new link %s (index %d).", link.name, link.ifindex)
                    return link.name
        raise AssertionError("unreachable: _events ends only by raising")

    def _events(self, what: str, timeout: Optional[float]) -> Iterator[Union[LinkEvent, _Resync]]:
        """Events as they come (the queued ones first); LinkWaitTimeout at `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                if remaining is not None and remaining <= 0:
                    raise socket.timeout
                self._sock.settimeout(remaining)
                data = self._sock.recv(RECEIVE_SIZE)
            except socket.timeout:
                raise LinkWaitTimeout(
                    f"timed out after {timeout:g} s waiting for {what}", timeout=timeout
                ) from None
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise HostError(f"cannot read link events: {_reason(error)}") from None
                yield from self._after_loss()
                continue
            yield from parse_link_messages(data)

    def _after_loss(self) -> Iterator[Union[LinkEvent, _Resync]]:
        """The events still queued, which are older than the lost ones (the kernel
        reports ENOBUFS first), then the links as they are now."""
        log.warning(
            "Link events were lost (the netlink socket's buffer overflowed); "
            "reading the links' current state instead."
        )
        self._sock.settimeout(0)
        for _ in range(LOSS_DRAIN_MAX):
            try:
                data = self._sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise HostError(f"cannot read link events: {_reason(error)}") from None
                continue
            yield from parse_link_messages(data)
        yield _Resync(list_links())


def _is_new(link: LinkEvent, known: Collection[str]) -> bool:
    return link.kind == "new" and not link.loopback and link.name not in known


def _limit(timeout: Optional[float]) -> str:
    return "no time limit" if timeout is None else f"up to {timeout:g} s"


def _state(event: LinkEvent) -> str:
    return "removed" if event.kind == "del" else "operational state not up"
