"""The one HTTP layer every fabric call goes through: one client, one retry policy.

Why these rules:
- `trust_env=False`: the fabric must never be reached through a proxy (IMDS
  refuses proxied requests; a corporate proxy turns every call into a hang).
- Retry connection errors (refused, ENETUNREACH early in boot, reset),
  timeouts, 408, 429 and 5xx with capped exponential backoff and jitter,
  honouring Retry-After, until the logical call's deadline. The cap is a few
  seconds so a fabric that comes back (p90 maintenance ≈ 3 min) is used at once.
- Every other 4xx fails fast: retrying a request the server understood and
  refused only hides the reason for 20 minutes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import logging
import random
import re
import socket
import ssl
import threading
import time
from typing import IO, Callable, Collection, Mapping, Optional, TypeVar

import httpx

from azprov import AGENT_NAME
from azprov.errors import (
    FabricTimeout,
    HttpStatusError,
    ReplyTooLarge,
    TransportError,
    one_line,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429} | set(range(500, 600)))
SUCCESS_STATUS = frozenset(range(200, 300))
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Timing of one logical call: per-request timeouts and the backoff between tries."""

    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    first_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0
    max_attempts: int = 0  # 0: as many as the deadline allows; 1: one try, never retried

    def backoff(self, attempt: int) -> float:
        """Delay before try `attempt + 1`: doubling from first_delay, capped, half-jittered."""
        ceiling = min(self.max_delay, self.first_delay * (2 ** min(attempt - 1, 30)))
        return ceiling * random.uniform(0.5, 1.0)


class Deadline:
    """The time a logical call (with all its retries) must finish by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())


@dataclasses.dataclass(frozen=True)
class Reply:
    """What a call returned: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Retry(Exception):
    """Raised by a reply parser when the body is unusable but may be fine next time."""


@dataclasses.dataclass(frozen=True)
class _Request:
    """One logical request, as tried again on each attempt."""

    what: str
    method: str
    url: str
    headers: Mapping[str, str] | None
    content: bytes | None
    max_bytes: int
    sink: IO[bytes] | None
    policy: RetryPolicy

    @property
    def shown(self) -> str:
        return redact_url(self.url)


@dataclasses.dataclass(frozen=True)
class _Retryable:
    """Why a try did not succeed but another may; `wait` is the server's Retry-After."""

    description: str
    wait: float | None = None


_SECRET_QUERY = re.compile(r"(?i)\b(sig|signature|code|token)=[^&]*")


def redact_url(url: str) -> str:
    """Hide SAS signatures and tokens in a URL before it reaches a log or an error."""
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", url)


def _retry_after(value: str | None, policy: RetryPolicy) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), policy.max_retry_after)


class FabricHttp:
    """An httpx client bound to one retry policy; shared by WireServer, HostGAPlugin and IMDS."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        plain, self._set_nodelay = _plain_http_transport()
        self._client = httpx.Client(
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(self.policy.read_timeout, connect=self.policy.connect_timeout),
            headers={"User-Agent": AGENT_NAME},
            transport=plain,
            mounts={"https://": _LazyTransport(_verified_https_transport)},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FabricHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        what: str,
        method: str,
        url: str,
        deadline: Deadline,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        parse: Optional[Callable[[Reply], T]] = None,
        accept: Collection[int] = SUCCESS_STATUS,
        retry_status: Collection[int] = RETRYABLE_STATUS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        sink: IO[bytes] | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        """Send one logical request, retrying as the policy says, and parse the reply.

        `what` names the call for messages ("goal state"). A status in `accept`
        goes to `parse` (which may raise `Retry`); one in `retry_status` is
        retried; any other fails at once. With `sink`, the body is streamed to
        it (rewound on each try) instead of kept in memory. `policy` replaces the
        client's timing for this call (e.g. one short try at a storage URL).
        """
        request = _Request(
            what, method, url, headers, content, max_bytes, sink, policy or self.policy
        )
        attempt = 0
        while True:
            attempt += 1
            outcome = self._try_once(request, deadline, parse, accept, retry_status)
            if not isinstance(outcome, _Retryable):
                return outcome
            self._wait_or_give_up(request, deadline, attempt, outcome)

    def _try_once(
        self,
        request: _Request,
        deadline: Deadline,
        parse: Optional[Callable[[Reply], T]],
        accept: Collection[int],
        retry_status: Collection[int],
    ) -> T | _Retryable:
        """One try: the parsed reply, a `_Retryable` saying why not yet, or a final error."""
        try:
            reply = self._send(request, deadline)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            return _Retryable(_describe_transport_error(exc))
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TransportError(
                f"{request.what}: {request.method} {request.shown} failed: "
                f"{_describe_transport_error(exc)}",
                url=request.shown,
            ) from None
        if reply.status in accept:
            try:
                return parse(reply) if parse else reply  # type: ignore[return-value]
            except Retry as exc:
                return _Retryable(f"unusable reply: {exc}")
        if reply.status in retry_status:
            wait = _retry_after(reply.headers.get("retry-after"), request.policy)
            return _Retryable(
                f"HTTP {reply.status}" + (f" with Retry-After {wait:g} s" if wait else ""), wait
            )
        raise HttpStatusError(
            f"{request.what}: {request.method} {request.shown} answered HTTP {reply.status}: "
            f"{_snippet(reply.content)}",
            status=reply.status,
            url=request.shown,
        )

    def _wait_or_give_up(
        self, request: _Request, deadline: Deadline, attempt: int, why: _Retryable
    ) -> None:
        """Sleep before the next try, or raise FabricTimeout when it would pass the deadline."""
        policy = request.policy
        delay = max(policy.backoff(attempt), why.wait or 0.0)
        if delay >= deadline.remaining() or 0 < policy.max_attempts <= attempt:
            raise FabricTimeout(
                f"{request.what}: no usable answer from {request.shown} within "
                f"{deadline.seconds:g} s ({attempt} attempt{'' if attempt == 1 else 's'}); "
                f"last: {why.description}",
                url=request.shown,
                attempts=attempt,
                last_error=why.description,
            )
        log.info(
            "%s: %s (attempt %d); retrying in %.1f s",
            request.what,
            why.description,
            attempt,
            delay,
        )
        time.sleep(delay)

    def _send(self, request: _Request, deadline: Deadline) -> Reply:
        # Never let one request outlive the logical call's deadline.
        remaining = max(deadline.remaining(), 0.05)
        timeout = httpx.Timeout(
            min(request.policy.read_timeout, remaining),
            connect=min(request.policy.connect_timeout, remaining),
        )
        sink = request.sink
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        with self._client.stream(
            request.method,
            request.url,
            headers=dict(request.headers or {}),
            content=request.content,
            timeout=timeout,
        ) as response:
            if self._set_nodelay:
                _nodelay(response)
            size = 0
            chunks: list[bytes] = []
            for chunk in response.iter_bytes():
                # The read timeout is per read: a server trickling bytes must
                # still not hold the call past its deadline.
                if deadline.remaining() <= 0:
                    raise httpx.ReadTimeout("the reply was still arriving at the deadline")
                size += len(chunk)
                if size > request.max_bytes:
                    raise ReplyTooLarge(
                        f"{request.method} {request.shown}: reply larger than "
                        f"{request.max_bytes} bytes",
                        url=request.shown,
                        max_bytes=request.max_bytes,
                    )
                if sink is not None:
                    sink.write(chunk)
                else:
                    chunks.append(chunk)
            return Reply(
                status=response.status_code,
                headers={k.lower(): v for k, v in response.headers.items()},
                content=b"".join(chunks),
                url=request.url,
            )


_NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _plain_http_transport() -> tuple[httpx.HTTPTransport, bool]:
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


def _verified_https_transport() -> httpx.HTTPTransport:
    """https:// (storage downloads): full verification against the default CA bundle."""
    try:
        return httpx.HTTPTransport(
            trust_env=False,
            socket_options=_NODELAY,  # type: ignore[call-arg,unused-ignore]
        )
    except TypeError:  # httpx < 0.25
        return httpx.HTTPTransport(trust_env=False)


class _LazyTransport(httpx.BaseTransport):
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


def _nodelay(response: httpx.Response) -> None:
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


def _describe_transport_error(exc: Exception) -> str:
    text = one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return text


def _snippet(content: bytes, limit: int = 200) -> str:
    text = one_line(content[:limit].decode("utf-8", errors="replace"))
    return text or "(empty body)"
