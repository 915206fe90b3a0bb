"""httpx, set up for the fabric: one `httpx.Client` and the rules every request obeys.

- http:// (WireServer, HostGAPlugin, IMDS) goes through a transport given a
  bare TLS context (no CA loaded, verification still required): httpx builds
  a context for every transport, and its default one loads a CA bundle, tens
  of milliseconds of a first boot that never speaks TLS. It never carries https.
- https:// (storage) goes through a transport mounted for it and made on first
  use, verifying against the system's default CA store (OpenSSL's default,
  which SSL_CERT_FILE/SSL_CERT_DIR override, as for every other OpenSSL client).
- No proxy from the environment, ever (trust_env=False): IMDS refuses proxied
  requests, and a corporate proxy turns every call into a hang.
- A redirect is the server's answer, never followed; a cookie is never kept.
- No Accept-Encoding: a reply is read as sent (`iter_raw`), so a compressed
  one can never be inflated past its size cap.
- Idle connections are dropped after 5 s: one that went silent in between must
  not cost the next call its whole read timeout.
- Requests go out exactly as written (see `sendable`), since the URLs come
  from the goal state. httpx normalises a URL, each version its own way: the
  target is also handed over as written in the "target" request extension,
  which httpcore 1.0.4 and later put on the wire; under an older engine, a URL
  httpx would rewrite is refused.
- TCP_NODELAY on every connection: the request head and body are written
  separately, so without it every POST with a body waits for the server's
  delayed ACK (40 ms on Linux, up to 200 ms on Windows).
- httpx is imported without its command-line entry point, which imports click
  (and rich and pygments, which distributions' httpx packages depend on) only
  to offer `httpx.main`: the first boot's `azprov provision` runs without them.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import socket
import ssl
import sys
import threading
import urllib.parse
from typing import Any, Iterator, Mapping, NamedTuple, Optional

from azprov import AGENT_NAME

# httpx's package ends with `try: from ._main import main`: a module that is None
# in sys.modules makes that import fail at once, and httpx defines a stub instead.
_CLI = "httpx._main"
_skip_cli = "httpx" not in sys.modules and _CLI not in sys.modules
if _skip_cli:
    sys.modules[_CLI] = None  # type: ignore[assignment]  # `from ._main import main` fails
try:
    import httpx
finally:
    if _skip_cli and _CLI in sys.modules and sys.modules[_CLI] is None:
        del sys.modules[_CLI]  # an explicit `import httpx._main` still works

_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
KEEPALIVE_EXPIRY = 5.0  # seconds, httpx's default
_DEFAULT_PORTS = {"http": 80, "https": 443}

# What a try can fail with below HTTP. The first kind may work next time
# (refused, reset, ENETUNREACH early in boot, a timeout, a connection cut
# mid-reply); the second never will (a request h11 refuses to write; the other
# two cannot happen as azprov sends, and would not be worth a retry if they did).
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
FINAL_ERRORS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.ProxyError)
TimeoutException = httpx.TimeoutException
ReadTimeout = httpx.ReadTimeout


def _sends_target_extension() -> bool:
    """Does httpx's engine put the "target" request extension on the wire (httpcore
    1.0.4 and later)? Read from the module httpx loaded, never imported here: httpx
    0.26 and 0.27 run on any httpcore 1.x (Ubuntu 24.04 pairs 0.26 with 1.0.2)."""
    engine = sys.modules.get("httpcore")
    try:
        version = tuple(int(part) for part in getattr(engine, "__version__", "").split(".")[:3])
    except ValueError:
        return False
    return version >= (1, 0, 4)


class Connections:
    """The client over both transports; `stream` sends one request exactly as written."""

    def __init__(self) -> None:
        plain, self._nodelay_per_connection = _transport(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        self._sends_target = _sends_target_extension()  # httpx has loaded its engine by now
        self._client = httpx.Client(
            transport=plain,
            mounts={"https://": _VerifyingTransport()},
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": AGENT_NAME},
            # A jar that accepts no domain: a cookie a server sets is never sent back.
            cookies=http.cookiejar.CookieJar(
                http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            ),
        )
        del self._client.headers["Accept-Encoding"]

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: Optional[bytes],
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> Iterator[httpx.Response]:
        """The reply, its body not yet read; Unsendable (before anything is sent) or an
        httpx error."""
        outgoing = sendable(url, headers, sends_target=self._sends_target)
        timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=read_timeout
        )
        with self._client.stream(
            method,
            outgoing.url,
            headers=outgoing.headers,
            content=content,
            timeout=timeout,
            extensions=outgoing.extensions,
        ) as response:
            if self._nodelay_per_connection:
                set_nodelay(response.extensions)
            yield response

    def close(self) -> None:
        self._client.close()


class _VerifyingTransport(httpx.BaseTransport):
    """https://: a transport verifying against the system's CA store, made on first use."""

    def __init__(self) -> None:
        self._transport: Optional[httpx.HTTPTransport] = None
        self._lock = threading.Lock()  # provision fetches in parallel threads

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            if self._transport is None:
                self._transport, _ = _transport(ssl.create_default_context())
            transport = self._transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()


def _transport(context: ssl.SSLContext) -> tuple[httpx.HTTPTransport, bool]:
    """A transport using `context` for TLS, and whether TCP_NODELAY must still be set per
    connection (httpx < 0.25)."""
    limits = httpx.Limits(max_connections=10, keepalive_expiry=KEEPALIVE_EXPIRY)
    try:
        transport = httpx.HTTPTransport(
            verify=context,
            limits=limits,
            trust_env=False,
            socket_options=_NODELAY,  # type: ignore[call-arg,unused-ignore]
        )
        return transport, False
    except TypeError:  # httpx < 0.25 has no socket_options
        return httpx.HTTPTransport(verify=context, limits=limits, trust_env=False), True


def set_nodelay(extensions: Mapping[str, Any]) -> None:
    """Set TCP_NODELAY on the connection that carried a reply (httpx < 0.25).

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


class Outgoing(NamedTuple):
    """A request as httpx is given it: the URL, the headers, the request extensions."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


def sendable(url: str, headers: Mapping[str, str], *, sends_target: bool) -> Outgoing:
    """The request for httpx, or Unsendable saying why (never quoting a value: a URL or
    header may carry a SAS signature). `sends_target`: the engine takes the target as
    written from the request's extensions, whatever httpx makes of the URL."""
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
    # What follows scheme://netloc, as written, up to a fragment (never sent).
    written = url[len(parts.scheme) + 3 + len(parts.netloc) :].partition("#")[0]
    target = (written if written.startswith("/") else f"/{written}").encode("ascii")
    address = _address(url, target)
    if (
        address.raw_host.decode("ascii").lower(),
        address.port or _DEFAULT_PORTS[parts.scheme],
    ) != (
        parts.hostname,
        port or _DEFAULT_PORTS[parts.scheme],
    ):
        raise Unsendable("httpx reads another host or port in the URL than it names")
    if address.raw_path != target and not sends_target:
        raise Unsendable(
            f"httpx {httpx.__version__} would rewrite the URL's path or query "
            f"({_rewritten(target)}), and it must go out as written"
        )
    # Host as the URL writes it ([::1]:80 for IPv6).
    sent = {"host": parts.netloc, **{name.lower(): value for name, value in headers.items()}}
    for name, value in sent.items():
        if not _printable(value, space=True):
            raise Unsendable(f"header {name}: control or non-ASCII characters in its value")
        if value != value.strip(" "):
            raise Unsendable(f"header {name}: leading or trailing whitespace in its value")
    extensions: dict[str, Any] = {"target": target} if sends_target else {}
    return Outgoing(address, sent, extensions)


def _address(url: str, target: bytes) -> httpx.URL:
    """httpx's reading of the URL, its path and query as written where this httpx keeps them."""
    try:
        address = httpx.URL(url)
        if address.raw_path != target:  # 0.23 keeps a raw_path given apart
            address = address.copy_with(raw_path=target)
    except (httpx.InvalidURL, ValueError) as exc:
        # The kind of problem only: httpx's message may quote part of the URL.
        raise Unsendable(f"httpx cannot use the URL ({str(exc).split(':')[0]})") from None
    return address


def _rewritten(target: bytes) -> str:
    path = target.partition(b"?")[0]
    if any(segment in (b".", b"..") for segment in path.split(b"/")):
        return "a '.' or '..' segment"
    if b"%" in target:
        return "a %-escape"
    return "a character it escapes"


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
