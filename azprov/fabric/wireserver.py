"""The WireServer client: goal state, health reports and config documents.

Shared by first-boot provisioning and the extension runner. Only reads from
and reports to Azure; it never changes the machine.
"""

from __future__ import annotations

import logging
import time
from typing import Mapping, NamedTuple, Optional

from azprov import AGENT_NAME
from azprov.config_values import parse_endpoint
from azprov.errors import FabricTimeout, NotWellFormed
from azprov.fabric.endpoints import base_url
from azprov.fabric.http import Deadline, FabricHttp, Reply, Retry
from azprov.fabric.models import GoalState, RoleInstanceMissing, parse_goal_state
from azprov.fabric.xmldoc import escape

log = logging.getLogger(__name__)

WIRE_PROTOCOL_VERSION = "2012-11-30"
DESCRIPTION_MAX_CHARS = 1024  # cloud-init keeps 512, WALinuxAgent 3686; our report line fits


class Health(NamedTuple):
    """A health report: Ready, or NotReady with a substatus and a description."""

    state: str  # "Ready" | "NotReady"
    substatus: Optional[str] = None  # "ProvisioningFailed" | "Provisioning"
    description: Optional[str] = None

    @classmethod
    def ready(cls) -> Health:
        return cls("Ready")

    @classmethod
    def failed(cls, description: str) -> Health:
        return cls("NotReady", "ProvisioningFailed", description)


def health_xml(goal_state: GoalState, health: Health) -> bytes:
    """The health document, laid out as the platform documents it, every value escaped."""
    details = ""
    if health.state != "Ready":
        description = health.description or ""
        if len(description) > DESCRIPTION_MAX_CHARS:
            description = description[: DESCRIPTION_MAX_CHARS - 3] + "..."
        details = (
            "\n          <Details>"
            f"\n            <SubStatus>{escape(health.substatus or 'ProvisioningFailed')}</SubStatus>"
            f"\n            <Description>{escape(description)}</Description>"
            "\n          </Details>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">\n'
        f"  <GoalStateIncarnation>{escape(goal_state.incarnation)}</GoalStateIncarnation>\n"
        "  <Container>\n"
        f"    <ContainerId>{escape(goal_state.container_id)}</ContainerId>\n"
        "    <RoleInstanceList>\n"
        "      <Role>\n"
        f"        <InstanceId>{escape(goal_state.instance_id)}</InstanceId>\n"
        "        <Health>\n"
        f"          <State>{escape(health.state)}</State>{details}\n"
        "        </Health>\n"
        "      </Role>\n"
        "    </RoleInstanceList>\n"
        "  </Container>\n"
        "</Health>\n"
    ).encode()


class WireServer:
    """Talks to the WireServer at `endpoint` (host or host:port) through `http`."""

    def __init__(
        self, http: FabricHttp, endpoint: str, total_timeout: float, hostplugin_port: int = 32526
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.total_timeout = total_timeout
        self.base = base_url(endpoint, 80)
        host, _ = parse_endpoint(endpoint)
        self.host = host
        self.hostplugin_base = base_url(host if ":" not in host else f"[{host}]", hostplugin_port)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"x-ms-version": WIRE_PROTOCOL_VERSION, "x-ms-agent-name": AGENT_NAME}
        headers.update(extra or {})
        return headers

    def deadline(self) -> Deadline:
        return Deadline(self.total_timeout)

    def goal_state(self, deadline: Deadline | None = None) -> GoalState:
        """Fetch the goal state, fetching again while RoleInstance is not there yet."""

        def parse(reply: Reply) -> GoalState:
            try:
                return parse_goal_state(reply.content)
            except RoleInstanceMissing:
                raise Retry("goal state has no RoleInstance yet") from None
            except NotWellFormed as exc:
                # A reply cut short: the next one is usually whole. A hostile
                # document (DTD, entities) is not retried.
                raise Retry(str(exc)) from None

        goal_state: GoalState = self.http.call(
            "goal state",
            "GET",
            f"{self.base}/machine/?comp=goalstate",
            deadline or self.deadline(),
            headers=self.headers(),
            parse=parse,
        )
        log.debug(
            "goal state: incarnation %s, container %s, instance %s",
            goal_state.incarnation,
            goal_state.container_id,
            goal_state.instance_id,
        )
        return goal_state

    def report_health(
        self, health: Health, goal_state: GoalState | None = None, deadline: Deadline | None = None
    ) -> GoalState:
        """POST `health` for the current goal state; returns the goal state it was posted for.

        A 410 means the goal state moved on while we worked: fetch it again and
        post for the new incarnation, within the same deadline.
        """
        deadline = deadline or self.deadline()
        goal_state = goal_state or self.goal_state(deadline)
        gone = 0
        while True:
            reply: Reply = self.http.call(
                f"health report ({health.state})",
                "POST",
                f"{self.base}/machine?comp=health",
                deadline,
                headers=self.headers({"Content-Type": "text/xml;charset=utf-8"}),
                content=health_xml(goal_state, health),
                accept={200, 201, 202, 410},
            )
            if reply.status != 410:
                log.info(
                    "reported %s for incarnation %s (instance %s)",
                    health.state,
                    goal_state.incarnation,
                    goal_state.instance_id,
                )
                return goal_state
            gone += 1
            log.info(
                "health report: incarnation %s is gone (HTTP 410); fetching the goal state again",
                goal_state.incarnation,
            )
            if gone > 1:
                # The first 410 is the goal state moving on; more in a row mean the
                # WireServer is not settled yet: back off as for any retry.
                self._wait_after_gone(health, goal_state, gone, deadline)
            goal_state = self.goal_state(deadline)

    def _wait_after_gone(
        self, health: Health, goal_state: GoalState, gone: int, deadline: Deadline
    ) -> None:
        delay = self.http.policy.backoff(gone - 1)
        if delay >= deadline.remaining():
            raise FabricTimeout(
                f"health report ({health.state}): the WireServer answered HTTP 410 (gone) "
                f"{gone} times in a row, last for incarnation {goal_state.incarnation}, "
                f"within {deadline.seconds:g} s",
                attempts=gone,
                last_error="HTTP 410",
            )
        time.sleep(delay)

    def fetch_document(
        self,
        what: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        deadline: Deadline | None = None,
        max_bytes: int = 4 * 1024 * 1024,
    ) -> bytes:
        """GET a document named by the goal state (ExtensionsConfig, Certificates, …)."""
        reply: Reply = self.http.call(
            what,
            "GET",
            url,
            deadline or self.deadline(),
            headers=self.headers(headers),
            max_bytes=max_bytes,
        )
        return reply.content
