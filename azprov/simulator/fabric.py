"""A simulated Azure fabric on loopback: WireServer, HostGAPlugin and IMDS.

Each service is a real HTTP server on its own port. Every request is recorded
(time, method, path, headers, body, answer). Faults are injected per service:
a listener that is down for N seconds (connections refused), scripted answers
consumed in order (status-code sequences with Retry-After, malformed or
hostile bodies, a body with no length that ends early), slow replies, an
action run when a request arrives (the goal state moving on just then),
incarnation changes and container moves.

The HostGAPlugin's `GET /vmSettings` (Fast Track) answers 404 until a test
publishes a document with `publish_vm_settings`: from then on 200 with an ETag,
304 to a request that names the current ETag in If-None-Match, and 410 to one
that names an earlier container. Publishing does not touch the incarnation, so
the WireServer keeps serving the goal state (and ExtensionsConfig) it had.

Routes are a table of (method, path prefix) -> handler, so other parts of the
project (the extension runner's tests) add endpoints without editing this file;
documents under the current container (`/machine/<container>/<role>?…`) are
added with `machine_document`, so they follow the container when it moves.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from typing import Optional
from urllib.parse import urlsplit

from azprov.fabric.xmldoc import child, parse_xml, text
from azprov.simulator.documents import (
    VmSpec,
    goal_state_xml,
    imds_json,
    role_config_name,
    versions_xml,
)
from azprov.simulator.service import Answer, Handler, Request, Service

log = logging.getLogger(__name__)


@dataclasses.dataclass
class HealthReport:
    """A health POST, parsed back from the XML the agent sent."""

    incarnation: str
    container_id: str
    instance_id: str
    state: str
    substatus: Optional[str]
    description: Optional[str]
    at: float


class SimulatedFabric:
    """WireServer + HostGAPlugin + IMDS for one simulated VM."""

    def __init__(
        self,
        spec: Optional[VmSpec] = None,
        host: str = "127.0.0.1",
        ports: tuple[int, int, int] = (0, 0, 0),
        advertised_base: Optional[str] = None,
    ) -> None:
        self.spec = spec or VmSpec()
        self.started_at = time.monotonic()
        self.requests: list[Request] = []
        self.health_reports: list[HealthReport] = []
        self._lock = threading.Lock()
        self._advertised_base = advertised_base
        self.wireserver = Service("wireserver", self, host, ports[0])
        self.hostplugin = Service("hostplugin", self, host, ports[1])
        self.imds = Service("imds", self, host, ports[2])
        self._machine_documents: list[tuple[str, Handler]] = []
        self._vm_settings: Optional[tuple[str, bytes]] = None  # (ETag, body); None: 404
        self._vm_settings_count = 0
        # IMDS's extended compute.ppsType: "None" unless a pool (simulator/pool.py) says so.
        self.pps_type = "None"
        self._install_default_routes()

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> SimulatedFabric:
        for service in self.services:
            service.start()
        return self

    def stop(self) -> None:
        # In parallel: each listener takes up to one poll interval to notice.
        stoppers = [threading.Thread(target=service.stop) for service in self.services]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()

    def __enter__(self) -> SimulatedFabric:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def services(self) -> tuple[Service, Service, Service]:
        return (self.wireserver, self.hostplugin, self.imds)

    @property
    def wireserver_endpoint(self) -> str:
        return f"{self.wireserver.host}:{self.wireserver.port}"

    @property
    def imds_url(self) -> str:
        return f"{self.imds.base}/metadata"

    @property
    def advertised_base(self) -> str:
        """The WireServer base URL written into documents (the guest's view in e2e)."""
        return self._advertised_base or self.wireserver.base

    def config_text(self, total_timeout: Optional[float] = None) -> str:
        """An azprov.conf that points every endpoint at this fabric (optionally short budgets)."""
        budget = f"total_timeout = {total_timeout:g}\n" if total_timeout else ""
        return (
            "[wireserver]\n"
            f"endpoint = {self.wireserver_endpoint}\n"
            f"hostplugin_port = {self.hostplugin.port}\n"
            f"{budget}"
            "[imds]\n"
            f"url = {self.imds_url}\n"
            f"{budget}"
        )

    # -- records ---------------------------------------------------------------
    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_to(self, service: str, route_prefix: str = "") -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.service == service and r.path.startswith(route_prefix)
            ]

    def new_incarnation(self) -> int:
        """The goal state moves on (as after a platform operation)."""
        with self._lock:
            self.spec.incarnation += 1
            return self.spec.incarnation

    def move_container(self) -> str:
        """The goal state moves on to a new container (as after a host update or a live
        migration): a new container id and config name, and a new incarnation. The
        HostGAPlugin refuses the old ones from now on; returns the new container id."""
        with self._lock:
            self.spec.container_id = str(uuid.uuid4())
            self.spec.incarnation += 1
            return self.spec.container_id

    def moves_on_at(self, service: Service, route: str, answer: Optional[Answer] = None) -> None:
        """Fault: the next request to `service` under `route` finds the goal state moved to
        a new container (`move_container`), and is answered `answer` if given (a 410, say),
        else as its route answers for the new container (the HostGAPlugin: 400
        InvalidContainerConfiguration for the old id)."""
        service.on_next(route, self.move_container)
        if answer is not None:
            service.script([answer], route)

    def machine_document(self, query: str, handler: Handler) -> None:
        """Serve `GET /machine/<container>/<role>?<query>…` (ExtensionsConfig, Certificates)
        with `handler`, for the container the goal state names now; a URL naming an
        earlier container is answered 410."""
        self._machine_documents.insert(0, (query, handler))

    def publish_vm_settings(self, document: bytes) -> str:
        """Fast Track: the HostGAPlugin serves `document` at `GET /vmSettings` under a new
        ETag (returned) from now on; the WireServer's goal state does not change."""
        with self._lock:
            self._vm_settings_count += 1
            etag = f"{self._vm_settings_count}{uuid.uuid4().int % 10**18:018d}"
            self._vm_settings = (etag, document)
            return etag

    def withdraw_vm_settings(self) -> None:
        """The HostGAPlugin stops serving vmSettings (404 from now on), as on a host
        without Fast Track."""
        with self._lock:
            self._vm_settings = None

    # -- default behaviour -------------------------------------------------
    def _install_default_routes(self) -> None:
        ws = self.wireserver
        ws.route("GET", "/machine/", self._machine_document)  # added first: tried last
        ws.route("GET", "/?comp=versions", lambda r: Answer(200, versions_xml()))
        ws.route("GET", "/machine/?comp=goalstate", self._goal_state)
        ws.route("GET", "/machine?comp=goalstate", self._goal_state)
        ws.route("POST", "/machine?comp=health", self._health)
        ws.route("POST", "/machine/?comp=health", self._health)
        self.hostplugin.route(
            "GET",
            "/versions",
            lambda r: Answer(200, b'["2015-09-01"]', {"Content-Type": "application/json"}),
        )
        self.hostplugin.route("GET", "/vmSettings", self._vm_settings_answer)
        self.imds.route("GET", "/metadata/instance", self._imds_instance)

    def _wire_headers_ok(self, request: Request) -> Optional[Answer]:
        if request.headers.get("x-ms-version") != "2012-11-30":
            return Answer(400, b"<Error><Code>MissingOrInvalidVersionHeader</Code></Error>")
        return None

    def _goal_state(self, request: Request) -> Answer:
        return self._wire_headers_ok(request) or Answer(
            200, goal_state_xml(self.spec, self.advertised_base)
        )

    def _vm_settings_answer(self, request: Request) -> Answer:
        if request.headers.get("x-ms-version") != "2015-09-01":
            return Answer(400, b"<Error><Code>MissingOrInvalidVersionHeader</Code></Error>")
        with self._lock:
            served = self._vm_settings
            named = (
                request.headers.get("x-ms-containerid"),
                request.headers.get("x-ms-host-config-name"),
            )
            current = (self.spec.container_id, role_config_name(self.spec))
        if served is None:
            return Answer(404, b"<Error><Code>NotFound</Code></Error>")
        if named != current:
            return Answer(410, b"<Error><Code>ResourceGone</Code></Error>")
        etag, body = served
        if request.headers.get("if-none-match") == etag:
            return Answer(304, b"", {"ETag": etag})
        return Answer(200, body, {"ETag": etag, "Content-Type": "application/json"})

    def _machine_document(self, request: Request) -> Answer:
        parts = urlsplit(request.path)
        for query, handler in self._machine_documents:
            if parts.query.startswith(query):
                current = f"/machine/{self.spec.container_id}/{self.spec.role_name}"
                if parts.path != current:
                    return Answer(410, b"<Error><Code>ContainerMovedOn</Code></Error>")
                return handler(request)
        return Answer(404, b"no such document in the simulated fabric\n")

    def _health(self, request: Request) -> Answer:
        bad = self._wire_headers_ok(request)
        if bad:
            return bad
        try:
            root = parse_xml(request.body, "health report")
        except Exception:
            return Answer(400, b"<Error><Code>InvalidXml</Code></Error>")
        details = child(root, "Container", "RoleInstanceList", "Role", "Health", "Details")
        report = HealthReport(
            incarnation=text(root, "GoalStateIncarnation") or "",
            container_id=text(root, "Container", "ContainerId") or "",
            instance_id=text(root, "Container", "RoleInstanceList", "Role", "InstanceId") or "",
            state=text(root, "Container", "RoleInstanceList", "Role", "Health", "State") or "",
            substatus=text(details, "SubStatus") if details is not None else None,
            description=text(details, "Description") if details is not None else None,
            at=request.at,
        )
        if report.incarnation != str(self.spec.incarnation):
            return Answer(410, b"<Error><Code>GoalStateIncarnationStale</Code></Error>")
        if (report.container_id, report.instance_id) != (
            self.spec.container_id,
            self.spec.instance_id,
        ):
            return Answer(400, b"<Error><Code>InvalidContainerOrInstance</Code></Error>")
        with self._lock:
            self.health_reports.append(report)
        return Answer(200)

    def _imds_instance(self, request: Request) -> Answer:
        if request.headers.get("metadata", "").lower() != "true":
            return Answer(400, b'{"error": "Bad request. Required metadata header not specified"}')
        if "x-forwarded-for" in request.headers:
            return Answer(400, b'{"error": "Bad request. X-Forwarded-For header is not allowed"}')
        if not request.query.get("api-version"):
            return Answer(400, b'{"error": "Bad request. api-version was not specified"}')
        extended = request.query.get("extended") == ["true"]
        document = imds_json(self.spec, self.pps_type if extended else None)
        return Answer(200, document, {"Content-Type": "application/json"})

    # -- an account for people ---------------------------------------------------
    def transcript(self) -> list[str]:
        """One line per request, relative to the fabric's start, for `azprov simulate`."""
        with self._lock:
            requests = list(self.requests)
        return [
            f"{r.at - self.started_at:7.3f}s  {r.service:<10} {r.method:<4} {r.path}  -> {r.status}"
            for r in requests
        ]
