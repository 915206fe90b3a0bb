"""The httpx transports under the one fabric client: plain HTTP without a CA bundle,
verifying HTTPS built only when first needed, and TCP_NODELAY on both."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Callable

import httpx

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def plain_http_transport() -> tuple[httpx.HTTPTransport, bool]:
    """The transport for http:// (WireServer, HostGAPlugin, IMDS), and whether
    TCP_NODELAY must still be set per connection (httpx < 0.25).

    TCP_NODELAY: httpx writes a request's head and body separately, so without
    it every POST with a body waits for the server's delayed ACK (40 ms on
    Linux, up to 200 ms on Windows). The TLS context is a bare one with no CA
    loaded: loading the CA bundle costs tens of milliseconds per process, and
    https:// never reaches this transport (it is mounted to a verifying one);
    were it to, verification would fail closed.
    """
    no_ca = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    try:
        transport = httpx.HTTPTransport(
            verify=no_ca,
            trust_env=False,
            socket_options=_NODELAY,  # type: ignore[call-arg,unused-ignore]
        )
        return transport, False
    except TypeError:  # httpx < 0.25 has no socket_options
        return httpx.HTTPTransport(verify=no_ca, trust_env=False), True


def verified_https_transport() -> httpx.HTTPTransport:
    """https:// (storage downloads): full verification against the default CA bundle."""
    try:
        return httpx.HTTPTransport(
            trust_env=False,
            socket_options=_NODELAY,  # type: ignore[call-arg,unused-ignore]
        )
    except TypeError:  # httpx < 0.25
        return httpx.HTTPTransport(trust_env=False)


class LazyTransport(httpx.BaseTransport):
    """Builds its transport on first use, so runs that never need it never pay for it."""

    def __init__(self, build: Callable[[], httpx.BaseTransport]) -> None:
        self._build = build
        self._transport: httpx.BaseTransport | None = None
        self._lock = threading.Lock()  # provision fetches in parallel threads

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._transport is None:
                self._transport = self._build()
            transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()


def set_nodelay(response: httpx.Response) -> None:
    """Set TCP_NODELAY on the connection that carried `response` (httpx < 0.25).

    Through the `network_stream` response extension (public in httpcore): the
    first exchange on a connection is not delayed (Linux ACKs at once while a
    connection is new), so setting it after the first reply covers the
    requests that follow on the same connection.
    """
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
