"""A simulated Azure fabric on loopback: WireServer, HostGAPlugin and IMDS.

Each service is a real HTTP server on its own port. Every request is recorded
(time, method, path, headers, body, answer). Faults are injected per service:
a listener that is down for N seconds (connections refused), scripted answers
consumed in order (status-code sequences with Retry-After, malformed or
hostile bodies), slow replies, and incarnation changes.

Routes are a table of (method, path prefix) -> handler, so other parts of the
project (the extension runner's tests) add endpoints without editing this file.
"""

from __future__ import annotations

import dataclasses
import http.server
import logging
import socket
import threading
import time
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from azprov.fabric.xmldoc import child, parse_xml, text
from azprov.simulator.documents import VmSpec, goal_state_xml, imds_json, versions_xml

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Request:
    """One request the fabric saw, and what it answered."""

    service: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived
    status: int = 0

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclasses.dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering


Handler = Callable[[Request], Answer]


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


class Service:
    """One simulated endpoint: a threaded HTTP server plus routes and faults."""

    def __init__(self, name: str, fabric: SimulatedFabric, host: str = "127.0.0.1", port: int = 0):
        self.name = name
        self.fabric = fabric
        self.host = host
        self.port = port
        self.delay = 0.0  # added to every answer
        self._routes: list[tuple[str, str, Handler]] = []
        self._scripts: list[tuple[Optional[str], list[Answer]]] = []
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        service = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the
            # second waits for the client's delayed ACK (40 ms a reply).
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                service._handle(self)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _serve

        server = http.server.ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- faults ------------------------------------------------------------
    def down_for(self, seconds: float) -> None:
        """Close the listener now (connections are refused) and reopen it after `seconds`."""
        self.stop()
        timer = threading.Timer(seconds, self.start)
        timer.daemon = True
        timer.start()

    def script(self, answers: list[Answer], path_prefix: Optional[str] = None) -> None:
        """Answer the next matching requests with `answers`, in order, before normal routing."""
        with self._lock:
            self._scripts.append((path_prefix, list(answers)))

    # -- routing -------------------------------------------------------------
    def route(self, method: str, path_prefix: str, handler: Handler) -> None:
        """Serve `method` requests whose path starts with `path_prefix` (latest added wins)."""
        self._routes.insert(0, (method.upper(), path_prefix, handler))

    def _answer(self, request: Request) -> Answer:
        with self._lock:
            for index, (prefix, answers) in enumerate(self._scripts):
                if prefix is None or request.path.startswith(prefix):
                    answer = answers.pop(0)
                    if not answers:
                        del self._scripts[index]
                    return answer
        for method, prefix, handler in self._routes:
            if method == request.method and request.path.startswith(prefix):
                return handler(request)
        return Answer(404, b"no such route in the simulated fabric\n")

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(
            service=self.name,
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        try:
            answer = self._answer(request)
        except Exception as exc:  # a broken test handler must show up as a 500, not a hang
            log.exception("simulated %s: handler failed", self.name)
            answer = Answer(500, f"simulator handler failed: {exc}\n".encode())
        request.status = answer.status
        self.fabric._record(request)
        pause = answer.delay + self.delay
        if pause:
            time.sleep(pause)
        try:
            handler.send_response(answer.status)
            headers = {"Content-Type": "text/xml; charset=utf-8", **answer.headers}
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the client gave up (its timeout); that is what a slow-reply test wants


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

    # -- default behaviour -------------------------------------------------
    def _install_default_routes(self) -> None:
        ws = self.wireserver
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
        self.imds.route("GET", "/metadata/instance", self._imds_instance)

    def _wire_headers_ok(self, request: Request) -> Optional[Answer]:
        if request.headers.get("x-ms-version") != "2012-11-30":
            return Answer(400, b"<Error><Code>MissingOrInvalidVersionHeader</Code></Error>")
        return None

    def _goal_state(self, request: Request) -> Answer:
        return self._wire_headers_ok(request) or Answer(
            200, goal_state_xml(self.spec, self.advertised_base)
        )

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
        return Answer(200, imds_json(self.spec), {"Content-Type": "application/json"})

    # -- an account for people ---------------------------------------------------
    def transcript(self) -> list[str]:
        """One line per request, relative to the fabric's start, for `azprov simulate`."""
        with self._lock:
            requests = list(self.requests)
        return [
            f"{r.at - self.started_at:7.3f}s  {r.service:<10} {r.method:<4} {r.path}  -> {r.status}"
            for r in requests
        ]
