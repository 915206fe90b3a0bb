"""The one timestamp format azprov writes: UTC, to the second, ISO 8601 with a Z."""

from __future__ import annotations

import datetime


def utc_timestamp(now: datetime.datetime | None = None) -> str:
    """`2026-12-01T05:18:16Z` for `now` (default: this moment)."""
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
