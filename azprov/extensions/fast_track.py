"""Fast Track (reference §7): vmSettings polled beside the WireServer goal state.

Each round asks the HostGAPlugin for vmSettings with the ETag of its last
answer: unchanged is a 304 with no body. A 404 means the host has no Fast
Track (yet): it is asked again after NOT_SERVED_ASKED_AGAIN_SECONDS, so such a
VM pays one request per process and per six hours and otherwise runs exactly as
before; a host that gains Fast Track (the HostGAPlugin is updated in place) is
found without a restart. A 410 (the container
moved) refreshes the goal state and asks once more. Any other failure is
logged once and asked again after a pause, never every round.

Which goal state to run is the runner's choice (`choose`): vmSettings whose
source is `Fabric` are ignored (the ExtensionsConfig says the same and comes
with its certificates); of two new ones the newer by creation time wins; and
the goal in effect is never replaced by an older one. While vmSettings are
served, the status document lists `FastTrack` among the supported features and
carries `vmArtifactsAggregateStatus.goalStateAggregateStatus` for the goal in
effect (`with_fast_track`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any, Callable, NamedTuple, Optional

from azprov.errors import AzprovError
from azprov.extensions.sources import FAST_TRACK, SourcedGoal
from azprov.extensions.vmsettings import parse_vm_settings
from azprov.fabric.client import Fabric
from azprov.fabric.models import GoalState
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

# HostGAPlugins older than this serve vmSettings the platform agent does not trust.
MIN_HOST_PLUGIN_VERSION = (1, 0, 8, 133)
_DOTTED = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}\Z")
# After a failure other than 404, vmSettings are asked again after this long.
RETRY_AFTER_SECONDS = 60.0
# After a 404 (or a HostGAPlugin too old for them): the host is asked again after this
# long, as the platform agent does. Fast Track comes with a HostGAPlugin update, rare
# enough that hours are soon enough, and the rounds in between cost no request.
NOT_SERVED_ASKED_AGAIN_SECONDS = 6 * 3600.0
# goalStateAggregateStatus codes, as the platform reads them.
CODE_SUCCESS = 0
CODE_UNSUPPORTED_REQUIRED_FEATURES = 1
# How many unsupported features the goal state's status names (each is at most 200
# characters long: vmsettings.SHOWN_MAX_CHARS), the rest counted.
FEATURES_NAMED = 10


class Polled(NamedTuple):
    """What one poll found: a new Fast Track goal state, that vmSettings stopped being
    served, and the goal state it was had with (refreshed after a 410)."""

    goal: Optional[SourcedGoal] = None
    stopped: bool = False
    goal_state: Optional[GoalState] = None


class FastTrack:
    """vmSettings for one process: the last ETag, and whether the host serves them."""

    def __init__(self, fabric: Fabric, clock: Callable[[], float] = time.monotonic) -> None:
        self.fabric = fabric
        self.clock = clock
        self.etag: Optional[str] = None
        self.served = False  # the last answer was a 200 or a 304
        self.refused: Optional[str] = None  # why the document under `etag` is unusable
        self.refused_config: Optional[str] = None  # an ExtensionsConfig run without: once
        self._pause_until = 0.0  # after a 404 or a failure: not asked before then
        self._failure: Optional[str] = None
        self._correlation_id = str(uuid.uuid4())

    def poll(self, goal_state: GoalState, refresh: Callable[[], GoalState]) -> Polled:
        if self.clock() < self._pause_until:
            return Polled()
        hostplugin = self.fabric.hostplugin
        etag, correlation = self.etag, self._correlation_id
        try:
            reply, used = hostplugin.with_fresh_container(
                lambda current: hostplugin.fetch_vm_settings(current, etag, correlation),
                goal_state,
                refresh,
            )
        except AzprovError as exc:
            level = logging.DEBUG if str(exc) == self._failure else logging.WARNING
            log.log(
                level, "vmSettings not had (asked again in %g s): %s", RETRY_AFTER_SECONDS, exc
            )
            self._failure, self._pause_until = str(exc), self.clock() + RETRY_AFTER_SECONDS
            return Polled()
        self._failure = None
        fresh = used if used is not goal_state else None
        if not reply.served:
            return self._stop("the HostGAPlugin does not serve vmSettings (HTTP 404)", fresh)
        self.served = True
        if reply.content is None or reply.etag is None:
            return Polled(goal_state=fresh)
        self.etag = reply.etag
        try:
            sourced = parse_vm_settings(reply.content, reply.etag)
        except AzprovError as exc:
            self.refused = f"vmSettings {reply.etag} refused: {exc}"
            log.error("%s", self.refused)
            return Polled(goal_state=fresh)
        self.refused = None
        if not host_plugin_version_supported(sourced.host_plugin_version):
            why = f"the HostGAPlugin's version {sourced.host_plugin_version} is too old for them"
            return self._stop(f"vmSettings are not used: {why}", fresh)
        if sourced.source != FAST_TRACK:
            log.info("vmSettings %s came through the %s: ignored", reply.etag, sourced.source)
            return Polled(goal_state=fresh)
        log.info("vmSettings %s: a new Fast Track goal state", reply.etag)
        return Polled(sourced, goal_state=fresh)

    def failures(self) -> list[str]:
        """The round's agent failures: a refused vmSettings document (while it stands) and
        an ExtensionsConfig refused while a Fast Track goal state ran without it (once)."""
        found = [f for f in (self.refused, self.refused_config) if f]
        self.refused_config = None
        return found

    def status(self, document: bytes, current: Optional[SourcedGoal], incarnation: str) -> bytes:
        """The status document as uploaded: while vmSettings are served, with FastTrack and
        the status of the goal state in effect (`with_fast_track`); else as it is."""
        if not self.served:
            return document
        goal = goal_status(current, incarnation) if current is not None else None
        return with_fast_track(document, goal)

    def forget(self) -> None:
        """Ask for the whole document next round (what was had could not be applied)."""
        self.etag = None

    def _stop(self, why: str, fresh: Optional[GoalState]) -> Polled:
        """No vmSettings for NOT_SERVED_ASKED_AGAIN_SECONDS; says whether they had been
        served."""
        was = self.served
        self.served, self.etag, self.refused = False, None, None
        self._pause_until = self.clock() + NOT_SERVED_ASKED_AGAIN_SECONDS
        hours = NOT_SERVED_ASKED_AGAIN_SECONDS / 3600
        log.info("%s: extensions come from the WireServer; asked again in %g h", why, hours)
        return Polled(stopped=was, goal_state=fresh)


def host_plugin_version_supported(version: Optional[str]) -> bool:
    """True unless the document names a HostGAPlugin older than MIN_HOST_PLUGIN_VERSION."""
    if version is None or not _DOTTED.match(version):
        return version is None
    parts = tuple(int(p) for p in version.split("."))
    return parts + (0,) * (4 - len(parts)) >= MIN_HOST_PLUGIN_VERSION


def goal_status(sourced: SourcedGoal, fallback_seq_no: str) -> dict[str, Any]:
    """goalStateAggregateStatus: whether azprov could run the goal state in effect."""
    unsupported = list(dict.fromkeys(sourced.goal.unsupported_features()))
    if unsupported:
        status, code = "Failed", CODE_UNSUPPORTED_REQUIRED_FEATURES
        # The document may list thousands: the message goes up in every status upload.
        named = ", ".join(unsupported[:FEATURES_NAMED])
        more = len(unsupported) - FEATURES_NAMED
        named += f" and {more} more ({len(unsupported)} in all)" if more > 0 else ""
        message = f"the goal state requires unsupported feature(s): {named}"
    else:
        status, code, message = "Success", CODE_SUCCESS, "GoalState executed successfully"
    return {
        "formattedMessage": {"lang": "en-US", "message": message},
        "timestampUTC": utc_timestamp(),
        "inSvdSeqNo": sourced.goal.in_svd_seq_no or fallback_seq_no,
        "status": status,
        "code": code,
    }


def with_fast_track(document: bytes, goal: Optional[dict[str, Any]]) -> bytes:
    """The status document (azprov's own) with what the platform reads while vmSettings
    are served: FastTrack among the supported features, and the status of the goal state
    in effect, if there is one yet."""
    value = json.loads(document)
    value.setdefault("supportedFeatures", []).append({"Key": "FastTrack", "Value": "1.0"})
    if goal is not None:
        value["aggregateStatus"]["vmArtifactsAggregateStatus"] = {"goalStateAggregateStatus": goal}
    return json.dumps(value, separators=(",", ":")).encode()
