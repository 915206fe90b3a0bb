"""The one HTTP layer every fabric call goes through: one client, one retry policy.

Why these rules:
- Never a proxy from the environment, never a redirect, never a URL rewritten on the
  way out (transport.py: httpx, set up for the fabric).
- Retry connection errors (refused, ENETUNREACH early in boot, reset), timeouts, 408,
  429 and 5xx with capped exponential backoff and jitter, honouring Retry-After, until
  the logical call's deadline. The cap is a few seconds so a fabric that comes back
  (p90 maintenance ≈ 3 min) is used at once.
- Every other 4xx fails fast: retrying a request the server understood and refused
  only hides the reason for 20 minutes.
"""

from __future__ import annotations

import logging
import re
import time
from typing import IO, Callable, Collection, Mapping, NamedTuple, Optional, TypeVar

from azprov.errors import (
    FabricTimeout,
    HttpStatusError,
    ReplyTooLarge,
    TransportError,
    one_line,
)
from azprov.fabric.retry import Deadline, RetryPolicy, retry_after
from azprov.fabric.transport import (
    FINAL_ERRORS,
    RETRYABLE_ERRORS,
    Connections,
    ReadTimeout,
    TimeoutException,
    Unsendable,
    header_map,
)

log = logging.getLogger(__name__)

# httpx (0.24 and later) logs every request URL at INFO and its engine, httpcore,
# traces requests at DEBUG, SAS signatures included: never let them, whoever
# configured logging (a caller may use httpx beside azprov). azprov's own
# messages name each request with the secrets redacted.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429} | set(range(500, 600)))
SUCCESS_STATUS = frozenset(range(200, 300))
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class Reply(NamedTuple):
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


class _Request(NamedTuple):
    """One logical request, as tried again on each attempt."""

    what: str
    method: str
    url: str
    headers: Mapping[str, str] | None
    fresh_headers: Callable[[], Mapping[str, str]] | None
    content: bytes | None
    max_bytes: int
    sink: IO[bytes] | None
    policy: RetryPolicy

    @property
    def shown(self) -> str:
        return redact_url(self.url)


class _Retryable(NamedTuple):
    """Why a try failed but another may: `wait` is Retry-After; `answered`: a reply came."""

    description: str
    wait: float | None = None
    answered: bool = True


class FabricUnreachable(FabricTimeout):
    """No usable answer in time, the last try no reply at all: fixing the network may help."""


_SECRET_QUERY = re.compile(r"(?i)\b(sig|signature|code|token)=[^&]*")


def redact_url(url: str) -> str:
    """Hide SAS signatures and tokens in a URL before it reaches a log or an error."""
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", url)


class FabricHttp:
    """The one HTTP client, bound to one retry policy; every fabric channel goes through it.

    Redirects are never followed and the environment's proxies never used.
    """

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._connections = Connections()

    def close(self) -> None:
        self._connections.close()

    def forget_connections(self) -> None:
        """Drop every kept-alive connection: once the VM's network changed (a pool VM's new
        NIC or lease), one made before goes nowhere and a request on it waits 30 s."""
        stale, self._connections = self._connections, Connections()
        stale.close()

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
        fresh_headers: Callable[[], Mapping[str, str]] | None = None,
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
        `fresh_headers` are made anew for each try (a request id that must not repeat).
        """
        request = _Request(
            what,
            method,
            url,
            headers,
            fresh_headers,
            content,
            max_bytes,
            sink,
            policy or self.policy,
        )
        attempt = 0
        while True:
            attempt += 1
            if deadline.cancelled:  # the caller has its answer (or gave up): send no more
                raise FabricTimeout(f"{what}: cancelled before try {attempt}", url=request.shown)
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
        except RETRYABLE_ERRORS as exc:
            return _Retryable(_describe_transport_error(exc), answered=False)
        except (Unsendable, *FINAL_ERRORS) as exc:
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
            wait = retry_after(reply.headers.get("retry-after"), request.policy)
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
            raise (FabricTimeout if why.answered else FabricUnreachable)(
                f"{request.what}: no usable answer from {request.shown} within "
                f"{deadline.seconds:g} s ({attempt} attempt{'' if attempt == 1 else 's'}); "
                f"last: {why.description}",
                url=request.shown,
                attempts=attempt,
                last_error=why.description,
            )
        log.log(
            logging.INFO if policy.log_retries else logging.DEBUG,
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
        sink = request.sink
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        with self._connections.stream(
            request.method,
            request.url,
            {
                **(request.headers or {}),
                **(request.fresh_headers() if request.fresh_headers else {}),
            },
            request.content,
            connect_timeout=min(request.policy.connect_timeout, remaining),
            read_timeout=min(request.policy.read_timeout, remaining),
        ) as response:
            size = 0
            chunks: list[bytes] = []
            # Raw: nothing is decompressed, so the cap holds for what is kept.
            for chunk in response.iter_raw():
                # The read timeout is per read: a server trickling bytes must
                # still not hold the call past its deadline.
                if deadline.remaining() <= 0:
                    raise ReadTimeout("the reply was still arriving at the deadline")
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
                headers=header_map(response.headers.raw),
                content=b"".join(chunks),
                url=request.url,
            )


def _describe_transport_error(exc: Exception) -> str:
    # redact_url: an error may quote what was sent (a URL in a header value, say).
    text = redact_url(one_line(str(exc))) or type(exc).__name__
    if isinstance(exc, TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return text


def _snippet(content: bytes, limit: int = 200) -> str:
    # redact_url: an error page may quote a SAS URL the HostGAPlugin was given, say.
    text = redact_url(one_line(content[:limit].decode("utf-8", errors="replace")))
    return text or "(empty body)"
