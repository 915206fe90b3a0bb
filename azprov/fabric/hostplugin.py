"""The HostGAPlugin (WireServer address, port 32526): artifacts and status through the host.

Most VMs have no route to Azure storage; the HostGAPlugin fetches manifests
and packages and uploads the status blob on the guest's behalf. Every call
names the container and the role config, so a stale goal state is refused
(400 InvalidContainerConfiguration or 410): `with_fresh_container` fetches the
goal state again and makes the call once more, as the platform agent does for
every HostGAPlugin call. Only reads from and reports to Azure.

`fetch_vm_settings` asks for the Fast Track goal state (vmSettings) with the
ETag of the last answer, so an unchanged one costs a 304 and no body. The
manifests and packages of a Fast Track goal's handlers are asked for with
`x-ms-verify-from-artifacts-blob: true`, as the platform agent asks for them
(WALinuxAgent sends it for both since 2022): the HostGAPlugin then checks them
against the goal's artifacts blob (reference §7). An ExtensionsConfig goal's
are asked for without it.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import IO, Callable, Mapping, NamedTuple, Optional, TypeVar

from azprov.errors import FabricError, HttpStatusError, InvalidInput, StaleContainer, one_line
from azprov.fabric.http import SUCCESS_STATUS, Deadline, FabricHttp, Reply, redact_url
from azprov.fabric.models import GoalState
from azprov.jsondoc import UnusableJson, parse_json

log = logging.getLogger(__name__)

T = TypeVar("T")

HOSTPLUGIN_VERSION = "2015-09-01"
# Status codes that mean "this container id / config name is stale".
_STALE_STATUS = frozenset({400, 410})
VM_SETTINGS_MAX_BYTES = 4 * 1024 * 1024
# An ETag names a version of a document: short printable ASCII text.
_ETAG_MAX_CHARS = 256
VERIFY_FROM_ARTIFACTS_BLOB = "x-ms-verify-from-artifacts-blob"


class VmSettings(NamedTuple):
    """The HostGAPlugin's answer to `GET /vmSettings`."""

    served: bool  # False: 404, this host has no Fast Track
    etag: Optional[str] = None
    content: Optional[bytes] = None  # None when unchanged since `etag` (304) or not served


class HostPlugin:
    """Talks to the HostGAPlugin at `base` (http://host:port) through `http`."""

    def __init__(self, http: FabricHttp, base: str, channel_timeout: float) -> None:
        self.http = http
        self.base = base
        self.channel_timeout = channel_timeout
        self._usable = False

    def deadline(self) -> Deadline:
        return Deadline(self.channel_timeout)

    def usable(self) -> bool:
        """True when `GET /versions` lists the protocol version we speak (remembered once true)."""
        if self._usable:
            return True

        def parse(reply: Reply) -> bool:
            try:
                versions = parse_json(reply.content, "HostGAPlugin versions")
            except UnusableJson:
                return False
            return isinstance(versions, list) and HOSTPLUGIN_VERSION in versions

        try:
            self._usable = self.http.call(
                "HostGAPlugin versions",
                "GET",
                f"{self.base}/versions",
                self.deadline(),
                parse=parse,
            )
        except FabricError as exc:
            log.info("the HostGAPlugin is not usable: %s", exc)
            return False
        if not self._usable:
            log.info("the HostGAPlugin does not list protocol version %s", HOSTPLUGIN_VERSION)
        return self._usable

    def with_fresh_container(
        self,
        call: Callable[[GoalState], T],
        goal_state: GoalState,
        refresh: Callable[[], GoalState],
    ) -> tuple[T, GoalState]:
        """`call(goal_state)`; when the HostGAPlugin finds that container stale, the goal
        state is fetched again with `refresh` and `call` made once more with it (never a
        loop: a second refusal is the caller's failure). Returns the result and the goal
        state it was had with, which the caller keeps for its next calls."""
        try:
            return call(goal_state), goal_state
        except StaleContainer as exc:
            log.info("%s; fetching the goal state again", exc)
        fresh = refresh()
        if fresh.container_id != goal_state.container_id:
            log.info("the goal state names container %s now", fresh.container_id)
        return call(fresh), fresh

    def _headers(self, goal_state: GoalState, extra: Mapping[str, str]) -> dict[str, str]:
        return {
            "x-ms-version": HOSTPLUGIN_VERSION,
            "x-ms-containerid": goal_state.container_id,
            "x-ms-host-config-name": goal_state.role_config_name or "",
            **extra,
        }

    def _checked(self, what: str, reply: Reply, goal_state: GoalState) -> Reply:
        if reply.status in SUCCESS_STATUS:
            return reply
        body = reply.text
        if reply.status == 410 or "InvalidContainerConfiguration" in body:
            raise StaleContainer(
                f"{what}: the HostGAPlugin refused container {goal_state.container_id} "
                f"(HTTP {reply.status}); the goal state moved on",
                status=reply.status,
            )
        raise HttpStatusError(
            f"{what}: the HostGAPlugin answered HTTP {reply.status}: {_snippet(body)}",
            status=reply.status,
        )

    def fetch_vm_settings(
        self, goal_state: GoalState, etag: Optional[str], correlation_id: str
    ) -> VmSettings:
        """The vmSettings document if it changed since `etag`. StaleContainer on a 410 (the
        caller refreshes the goal state: `with_fresh_container`); any other refusal, a 502
        included, is this round's failure, asked again next round, never retried here."""
        extra = {"x-ms-client-correlationid": correlation_id}
        if etag is not None:
            extra["If-None-Match"] = etag
        reply: Reply = self.http.call(
            "vmSettings",
            "GET",
            f"{self.base}/vmSettings",
            self.deadline(),
            headers=self._headers(goal_state, extra),
            accept=SUCCESS_STATUS | {304, 404, 410},
            retry_status=(),
            max_bytes=VM_SETTINGS_MAX_BYTES,
        )
        if reply.status == 404:
            return VmSettings(False)
        if reply.status == 410:
            raise StaleContainer(
                f"vmSettings: the HostGAPlugin refused container {goal_state.container_id} "
                "(HTTP 410); the goal state moved on",
                status=410,
            )
        if reply.status == 304:
            return VmSettings(True, etag)
        if reply.status != 200:
            raise HttpStatusError(
                f"vmSettings: the HostGAPlugin answered HTTP {reply.status}", status=reply.status
            )
        new_etag = reply.headers.get("etag", "").strip()
        # Sent back as If-None-Match next round: text that could not be (not ASCII) would
        # fail every later poll, and no newer goal state would be seen.
        usable = new_etag.isascii() and new_etag.isprintable()
        if not new_etag or len(new_etag) > _ETAG_MAX_CHARS or not usable:
            raise InvalidInput(
                "vmSettings ETag", new_etag[:80], "missing or unusable in a 200 answer"
            )
        return VmSettings(True, new_etag, reply.content)

    def fetch_artifact(
        self,
        what: str,
        url: str,
        goal_state: GoalState,
        *,
        max_bytes: int,
        sink: IO[bytes] | None = None,
        verify_from_artifacts_blob: bool = False,
    ) -> Reply:
        """GET the storage `url` through the host; the body goes to `sink` if given.
        `verify_from_artifacts_blob`: for a Fast Track goal's handler (see above)."""
        extra = {"x-ms-artifact-location": url}
        if verify_from_artifacts_blob:
            extra[VERIFY_FROM_ARTIFACTS_BLOB] = "true"
        reply: Reply = self.http.call(
            f"{what} via the HostGAPlugin",
            "GET",
            f"{self.base}/extensionArtifact",
            self.deadline(),
            headers=self._headers(goal_state, extra),
            accept=SUCCESS_STATUS | _STALE_STATUS,
            max_bytes=max_bytes,
            sink=sink,
        )
        log.debug("fetched %s via the HostGAPlugin", redact_url(url))
        return self._checked(what, reply, goal_state)

    def put_status(
        self,
        request_uri: str,
        blob_headers: Mapping[str, str],
        content: bytes,
        goal_state: GoalState,
    ) -> None:
        """Have the host PUT `content` to the SAS `request_uri` with `blob_headers`."""
        body = json.dumps(
            {
                "requestUri": request_uri,
                "headers": [{"headerName": k, "headerValue": v} for k, v in blob_headers.items()],
                "content": base64.b64encode(content).decode("ascii"),
            }
        ).encode()
        reply: Reply = self.http.call(
            "status upload via the HostGAPlugin",
            "PUT",
            f"{self.base}/status",
            self.deadline(),
            headers=self._headers(goal_state, {"Content-Type": "application/json"}),
            content=body,
            accept=SUCCESS_STATUS | _STALE_STATUS,
        )
        self._checked("status upload", reply, goal_state)


def _snippet(body: str) -> str:
    """The start of an error page as one line, SAS signatures hidden: it may quote the
    storage URL the HostGAPlugin was given, and the error reaches the status document."""
    return redact_url(one_line(body[:200])) or "(empty body)"
