"""Fetching from Azure storage: directly, else through the HostGAPlugin.

Each channel gets a short budget (`[extensions] channel_timeout`) before the
other is tried, and the channel that worked is tried first next time: on most
VMs storage is unreachable and every direct try would only cost time.
"""

from __future__ import annotations

import logging
from typing import IO, Callable

from azprov.errors import (
    ArtifactUnavailable,
    FabricError,
    HostPluginUnusable,
    ReplyTooLarge,
    StaleContainer,
)
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import Deadline, FabricHttp, Reply, redact_url
from azprov.fabric.models import GoalState

log = logging.getLogger(__name__)

DIRECT = "storage"
HOST = "HostGAPlugin"


class Artifacts:
    """Gets storage URLs for one goal state; `refresh` fetches a newer goal state."""

    def __init__(
        self,
        http: FabricHttp,
        hostplugin: HostPlugin,
        goal_state: GoalState,
        refresh: Callable[[], GoalState],
    ) -> None:
        self.http = http
        self.hostplugin = hostplugin
        self.goal_state = goal_state
        self._refresh = refresh
        self._order = [DIRECT, HOST]

    def fetch(
        self, what: str, url: str, *, max_bytes: int, sink: IO[bytes] | None = None
    ) -> bytes:
        """The body of `url` (empty when streamed to `sink`); FabricError when no channel works."""
        failures = []
        for channel in list(self._order):
            try:
                reply = self._fetch_from(channel, what, url, max_bytes, sink)
            except ReplyTooLarge:
                raise  # the other channel would deliver the same oversized body
            except FabricError as exc:
                # The error names `what` already; keep the line about the channel.
                why = str(exc).removeprefix(f"{what}: ").removeprefix(f"{what} via the {HOST}: ")
                log.info("%s: not from %s: %s", what, channel, why)
                failures.append(f"{channel}: {why}")
                continue
            if self._order[0] != channel:
                self._order = [channel] + [c for c in self._order if c != channel]
            return reply.content
        raise ArtifactUnavailable(
            f"{what}: cannot fetch {redact_url(url)} ({'; '.join(failures)})",
            url=redact_url(url),
        )

    def _fetch_from(
        self, channel: str, what: str, url: str, max_bytes: int, sink: IO[bytes] | None
    ) -> Reply:
        if channel == DIRECT:
            return self.http.call(
                what,
                "GET",
                url,
                Deadline(self.hostplugin.channel_timeout),
                max_bytes=max_bytes,
                sink=sink,
            )
        if not self.hostplugin.usable():
            raise HostPluginUnusable("the HostGAPlugin is not usable")
        try:
            return self.hostplugin.fetch_artifact(
                what, url, self.goal_state, max_bytes=max_bytes, sink=sink
            )
        except StaleContainer as exc:
            # The container id we sent is stale: a newer goal state names the current one.
            log.info("%s; fetching the goal state again", exc)
            self.goal_state = self._refresh()
            return self.hostplugin.fetch_artifact(
                what, url, self.goal_state, max_bytes=max_bytes, sink=sink
            )
