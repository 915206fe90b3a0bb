"""Uploading the status document to its blob: through the HostGAPlugin, else directly.

A BlockBlob is one PUT. A PageBlob is created with its size rounded up to
512 bytes, then written as one page range. Through the HostGAPlugin the same
requests travel wrapped in `PUT /status`, so both channels share one recipe.

A HostGAPlugin that finds the container stale (the goal state moved on) gets
the same requests once more for the container a fresh goal state names. A
direct PUT gets one short try, since most VMs have no route to storage; but
storage that answered with a server error is reachable, and the PUT is then
tried again as every other call is (`fabric.http`'s one retry policy), so one
5xx does not cost the round its status.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
from typing import Callable, Optional

from azprov.errors import AzprovError, FabricError, StatusUploadFailed
from azprov.extensions.goal import ExtensionsGoal
from azprov.fabric.client import Fabric
from azprov.fabric.http import RETRYABLE_STATUS, SUCCESS_STATUS, Deadline, Reply
from azprov.fabric.models import GoalState

log = logging.getLogger(__name__)

BLOB_API_VERSION = "2014-02-14"
PAGE = 512


@dataclasses.dataclass(frozen=True)
class BlobRequest:
    url: str
    headers: dict[str, str]
    content: bytes


def blob_requests(sas_url: str, blob_type: str, document: bytes) -> list[BlobRequest]:
    """The PUTs that store `document` in the blob at `sas_url`."""
    common = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": BLOB_API_VERSION}
    if blob_type == "BlockBlob":
        return [BlobRequest(sas_url, {**common, "x-ms-blob-type": "BlockBlob"}, document)]
    padded = document + b"\0" * (-len(document) % PAGE)
    create = {
        **common,
        "x-ms-blob-type": "PageBlob",
        "x-ms-blob-content-length": str(len(padded)),
        "Content-Length": "0",
    }
    page = {**common, "x-ms-range": f"bytes=0-{len(padded) - 1}", "x-ms-page-write": "update"}
    separator = "&" if "?" in sas_url else "?"
    return [
        BlobRequest(sas_url, create, b""),
        BlobRequest(f"{sas_url}{separator}comp=page", page, padded),
    ]


def upload_status(
    fabric: Fabric,
    goal_state: GoalState,
    sas_url: str,
    blob_type: str,
    document: bytes,
    refresh: Callable[[], GoalState],
) -> str:
    """Store `document`; returns the channel that worked. FabricError if neither did.
    `refresh` fetches the goal state again when the HostGAPlugin finds its container stale."""
    requests = blob_requests(sas_url, blob_type, document)
    failures = []
    hostplugin = fabric.hostplugin
    if hostplugin.usable():

        def put_all(current: GoalState) -> None:
            for request in requests:
                hostplugin.put_status(request.url, request.headers, request.content, current)

        try:
            hostplugin.with_fresh_container(put_all, goal_state, refresh)
            return "HostGAPlugin"
        except FabricError as exc:
            log.info("status upload through the HostGAPlugin failed: %s", exc)
            failures.append(f"HostGAPlugin: {exc}")
    else:
        failures.append("HostGAPlugin: not usable")
    try:
        for request in requests:
            _put_direct(fabric, f"status upload ({blob_type})", request)
    except FabricError as exc:
        failures.append(f"storage: {exc}")
        raise StatusUploadFailed(f"status upload failed: {'; '.join(failures)}") from None
    return "storage"


class StatusUploads:
    """The status upload of every round; a failure that repeats is logged once."""

    def __init__(self, fabric: Fabric, refresh: Callable[[], GoalState]) -> None:
        self.fabric = fabric
        self.refresh = refresh
        self._error: Optional[str] = None

    def upload(
        self, goal_state: GoalState, goal: ExtensionsGoal, document: bytes, failures: list[str]
    ) -> None:
        """Store `document` in `goal`'s status blob; a failure is added to `failures`."""
        assert goal.status_blob_url is not None
        try:
            channel = upload_status(
                self.fabric,
                goal_state,
                goal.status_blob_url,
                goal.status_blob_type,
                document,
                self.refresh,
            )
        except AzprovError as exc:
            # Every poll fails the same way while the fabric is down: say it once.
            level = logging.DEBUG if str(exc) == self._error else logging.ERROR
            log.log(level, "%s", exc)
            self._error = str(exc)
            failures.append(f"status upload: {exc}")
            return
        if self._error is not None:
            log.info("status uploaded through %s again", channel)
            self._error = None
        log.debug("status uploaded through %s (%d bytes)", channel, len(document))


def _put_direct(fabric: Fabric, what: str, request: BlobRequest) -> None:
    """PUT `request` to storage: one short try; again under the one retry policy when
    storage answered with a server error (it is reachable, and busy)."""
    storage = fabric.storage
    reply: Reply = fabric.http.call(
        what,
        "PUT",
        request.url,
        Deadline(storage.timeout),
        headers=request.headers,
        content=request.content,
        policy=storage.policy,
        accept=SUCCESS_STATUS | RETRYABLE_STATUS,
    )
    if reply.status in SUCCESS_STATUS:
        return
    log.info("%s: storage answered HTTP %d; trying again", what, reply.status)
    fabric.http.call(
        what,
        "PUT",
        request.url,
        Deadline(storage.timeout),
        headers=request.headers,
        content=request.content,
    )
