"""The one retry policy: per-request timeouts, capped jittered backoff, Retry-After,
all inside the deadline of one logical call."""

from __future__ import annotations

import random
import time
from typing import NamedTuple


class RetryPolicy(NamedTuple):
    """Timing of one logical call: per-request timeouts and the backoff between tries."""

    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    first_delay: float = 0.1
    max_delay: float = 5.0
    max_retry_after: float = 30.0
    max_attempts: int = 0  # 0: as many as the deadline allows; 1: one try, never retried
    log_retries: bool = True  # False: a poll where "not yet" is the normal answer (debug only)

    def backoff(self, attempt: int) -> float:
        """Delay before try `attempt + 1`: doubling from first_delay, capped, half-jittered."""
        ceiling = min(self.max_delay, self.first_delay * (2 ** min(attempt - 1, 30)))
        return ceiling * random.uniform(0.5, 1.0)


class Deadline:
    """The time a logical call (with all its retries) must finish by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self.cancelled = False

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def cancel(self) -> None:
        """End the call now: no try starts from here on, not even the one a sleep before
        a retry was for, nor a call begun later with this deadline (a try in flight
        finishes)."""
        self._end = time.monotonic()
        self.cancelled = True


def retry_after(value: str | None, policy: RetryPolicy) -> float | None:
    """Seconds a Retry-After header asks for (delta or HTTP date), capped; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        import email.utils  # only for an HTTP-date: off the import path of every run

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), policy.max_retry_after)
