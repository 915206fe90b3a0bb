"""Fetching from Azure storage: directly, else through the HostGAPlugin.

A direct request gets one short try (most VMs have no route to storage),
then the HostGAPlugin is asked at once. The channel that worked is tried
first next time: the order is one list, kept by the runner for as long as it
runs and saved with the rest of what it remembers, so neither a new goal
state nor a new process pays for the unreachable channel again.

A caller may check what arrived before it counts (a package must be a whole
zip): a body its check finds damaged is that channel's failure, and the next
channel is asked. A file that only ever arrived damaged is a transient failure:
the next round asks again.
"""

from __future__ import annotations

import io
import logging
from typing import IO, Callable, Optional

from azprov.errors import (
    ArtifactUnavailable,
    FabricError,
    HostPluginUnusable,
    HttpStatusError,
    ReplyTooLarge,
    TransientArtifactUnavailable,
    TransientFabricError,
)
from azprov.fabric.client import Fabric
from azprov.fabric.http import Reply, redact_url
from azprov.fabric.models import GoalState

log = logging.getLogger(__name__)

DIRECT = "storage"
HOST = "HostGAPlugin"
CHANNELS = (DIRECT, HOST)


class DamagedDownload(Exception):
    """Raised by a fetch's check: what arrived is not the whole file (a package that is
    not a whole zip). That channel failed; another may deliver it whole."""


Check = Callable[[IO[bytes]], None]


class Artifacts:
    """Gets storage URLs for the current goal state; `refresh` fetches a newer goal state."""

    def __init__(
        self,
        fabric: Fabric,
        refresh: Callable[[], GoalState],
        order: list[str],
    ) -> None:
        self.fabric = fabric
        self.goal_state: GoalState | None = None
        self._refresh = refresh
        known = [c for c in order if c in CHANNELS]
        # The caller's list, kept in order in place: the runner saves it.
        order[:] = known + [c for c in CHANNELS if c not in known]
        self.order = order

    def fetch(
        self,
        what: str,
        url: str,
        *,
        max_bytes: int,
        sink: IO[bytes] | None = None,
        check: Optional[Check] = None,
        verify_from_artifacts_blob: bool = False,
    ) -> bytes:
        """The body of `url` (empty when streamed to `sink`) that passed `check`, if given
        (it reads the body and raises DamagedDownload); FabricError when no channel works.
        `verify_from_artifacts_blob`: for a Fast Track goal's handler (`fetch_artifact`)."""
        failures = []
        transient, refused, damaged = False, False, False
        for channel in list(self.order):
            try:
                reply = self._fetch_from(
                    channel, what, url, max_bytes, sink, verify_from_artifacts_blob
                )
                if check is not None:
                    _checked(check, reply.content, sink)
            except ReplyTooLarge:
                raise  # the other channel would deliver the same oversized body
            except DamagedDownload as exc:
                log.warning("%s: damaged from %s: %s", what, channel, exc)
                failures.append(f"{channel}: {exc}")
                damaged = True
                continue
            except FabricError as exc:
                # The error names `what` already; keep the line about the channel.
                why = str(exc).removeprefix(f"{what}: ").removeprefix(f"{what} via the {HOST}: ")
                log.info("%s: not from %s: %s", what, channel, why)
                failures.append(f"{channel}: {why}")
                transient = transient or isinstance(exc, TransientFabricError)
                refused = refused or isinstance(exc, HttpStatusError)
                continue
            if self.order[0] != channel:
                log.info("%s worked: trying it first from now on", channel)
                self.order[:] = [channel] + [c for c in self.order if c != channel]
            return reply.content
        # A server that understood and refused (a 403, a 404) is the answer, even when
        # the other channel only timed out: asking again next round will not change it.
        # But a channel that delivered the file damaged shows that it is there.
        retry = damaged or (transient and not refused)
        kind = TransientArtifactUnavailable if retry else ArtifactUnavailable
        raise kind(
            f"{what}: cannot fetch {redact_url(url)} ({'; '.join(failures)})",
            url=redact_url(url),
        )

    def _fetch_from(
        self,
        channel: str,
        what: str,
        url: str,
        max_bytes: int,
        sink: IO[bytes] | None,
        verify_from_artifacts_blob: bool = False,
    ) -> Reply:
        if channel == DIRECT:
            return self.fabric.storage.get(what, url, max_bytes=max_bytes, sink=sink)
        hostplugin = self.fabric.hostplugin
        if not hostplugin.usable():
            raise HostPluginUnusable("the HostGAPlugin is not usable")
        reply, _ = hostplugin.with_fresh_container(
            lambda goal_state: hostplugin.fetch_artifact(
                what,
                url,
                goal_state,
                max_bytes=max_bytes,
                sink=sink,
                verify_from_artifacts_blob=verify_from_artifacts_blob,
            ),
            self.goal_state or self.refresh(),
            self.refresh,
        )
        return reply

    def refresh(self) -> GoalState:
        """The goal state fetched again (a stale container): HostGAPlugin calls name its
        container from now on, the status upload's too."""
        self.goal_state = self._refresh()
        return self.goal_state


def _checked(check: Check, content: bytes, sink: IO[bytes] | None) -> None:
    """Run `check` over the body, from the start of `sink` when it was streamed there."""
    if sink is None:
        check(io.BytesIO(content))
        return
    sink.seek(0)
    check(sink)
    sink.seek(0)
