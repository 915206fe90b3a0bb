"""The connection pools under the one fabric client: httpcore, httpx's own engine.

Why httpcore and not the `httpx` package on top of it: azprov's requests are
few, built by azprov itself, never redirected, never proxied and never
compressed, so everything httpx adds over its engine (URL normalisation,
cookies, auth, proxies from the environment, content decoding, the async and
mock transports) is unused here, and `import httpx` is most of a first boot's
CPU: with Debian 12's httpx 0.23, 0.33 s of a native process against 0.12 s
for `import httpcore` (ten runs each, `python3 -c 'import …'`), and seconds
under emulation. httpcore comes with every httpx (httpx 0.23 pins 0.16, 0.28
pins 1.x); the suite runs against both.

- http:// (WireServer, HostGAPlugin, IMDS): a pool that never builds a TLS
  context, so no CA bundle is loaded (tens of milliseconds per process).
- https:// (storage): a second pool, made on first use, verifying against the
  system's default CA store with one context shared by its connections.
- No proxy from the environment, ever: IMDS refuses proxied requests, and a
  corporate proxy turns every call into a hang. (The HTTPS pool's CA store
  is OpenSSL's default, which SSL_CERT_FILE/SSL_CERT_DIR override, as for
  every other OpenSSL client on the machine.)
- Idle connections are dropped after 5 s, as httpx does: a connection that
  went silent in between must not cost the next call its whole read timeout.
- Requests go out exactly as written (see `sendable`): httpcore is given the
  parts of the URL and the Host header, and nothing is escaped on anyone's
  behalf, since the URLs come from the goal state.
- TCP_NODELAY on every connection: the request head and body are written
  separately, so without it every POST with a body waits for the server's
  delayed ACK (40 ms on Linux, up to 200 ms on Windows).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import urllib.parse
from typing import Any, Mapping, Optional

import httpcore

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
KEEPALIVE_EXPIRY = 5.0  # seconds, httpx's default

# What a try can fail with below HTTP. The first kind may work next time
# (refused, reset, ENETUNREACH early in boot, a timeout, a connection cut
# mid-reply); the second never will (a request h11 refuses to write; the other
# two cannot happen as azprov sends, and would not be worth a retry if they did).
RETRYABLE_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.RemoteProtocolError)
FINAL_ERRORS = (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError, httpcore.ProxyError)


class Pools:
    """The plain-HTTP pool, and the verifying HTTPS pool once something needs it."""

    def __init__(self) -> None:
        self._plain, self.needs_nodelay = _pool(None)
        self._https: Optional[httpcore.ConnectionPool] = None
        self._lock = threading.Lock()  # provision fetches in parallel threads

    def for_scheme(self, scheme: str) -> httpcore.ConnectionPool:
        if scheme == "http":  # `sendable` lets through only http and https
            return self._plain
        with self._lock:
            if self._https is None:
                self._https, _ = _pool(ssl.create_default_context())
            return self._https

    def close(self) -> None:
        self._plain.close()
        with self._lock:
            if self._https is not None:
                self._https.close()


def _pool(context: Optional[ssl.SSLContext]) -> tuple[httpcore.ConnectionPool, bool]:
    """A pool, and whether TCP_NODELAY must still be set per connection (httpcore < 0.17)."""
    # No context: the pool builds none until an https:// connection, which
    # Pools never sends it.
    options: dict[str, Any] = {
        "ssl_context": context,
        "max_connections": 10,
        "keepalive_expiry": KEEPALIVE_EXPIRY,
    }
    try:
        pool = httpcore.ConnectionPool(
            socket_options=_NODELAY,  # type: ignore[call-arg,unused-ignore]
            **options,
        )
        return pool, False
    except TypeError:  # httpcore < 0.17 has no socket_options
        return httpcore.ConnectionPool(**options), True


def set_nodelay(extensions: Mapping[str, Any]) -> None:
    """Set TCP_NODELAY on the connection that carried a reply (httpcore < 0.17).

    Through the `network_stream` response extension: the first exchange on a
    connection is not delayed (Linux ACKs at once while a connection is new),
    so setting it after the first reply covers the requests that follow on the
    same connection.
    """
    stream = extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Unsendable(Exception):
    """A request that cannot be sent as it is: not http(s), no host, user info, or
    characters no server would take unescaped (in the URL or a header value)."""


def sendable(
    url: str, headers: Mapping[str, str]
) -> tuple[str, httpcore.URL, list[tuple[bytes, bytes]]]:
    """(scheme, URL, headers) for httpcore, or Unsendable saying why (never quoting a
    value: a URL or header may carry a SAS signature)."""
    if not _printable(url, space=False):
        raise Unsendable("the URL has spaces, control or non-ASCII characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise Unsendable(f"unusable URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise Unsendable(f"unsupported URL scheme {parts.scheme!r}")
    if not parts.hostname:
        raise Unsendable("the URL names no host")
    if "@" in parts.netloc:
        raise Unsendable("the URL carries user info")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    address = httpcore.URL(
        scheme=parts.scheme.encode(),
        host=parts.hostname.encode(),
        port=port,
        target=target.encode(),
    )
    # Host as the URL writes it ([::1]:80 for IPv6, which httpcore would get wrong).
    sent = {"host": parts.netloc, **{name.lower(): value for name, value in headers.items()}}
    for name, value in sent.items():
        if not _printable(value, space=True):
            raise Unsendable(f"header {name}: control or non-ASCII characters in its value")
    return parts.scheme, address, [(n.encode(), v.encode()) for n, v in sent.items()]


def _printable(text: str, *, space: bool) -> bool:
    low = 0x20 if space else 0x21
    return all(low <= ord(char) <= 0x7E for char in text)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; a header sent more than once keeps every value, comma-joined."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers
