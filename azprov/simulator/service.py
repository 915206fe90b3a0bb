"""One simulated fabric service: a real HTTP server on loopback answering from a route
table, with scripted answers, a listener that can go down, and slow replies."""

from __future__ import annotations

import dataclasses
import http.server
import logging
import socket
import threading
import time
from typing import Callable, Optional, Protocol
from urllib.parse import parse_qs, urlsplit

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
    # Sent with no Content-Length, the connection closed after the body: a reply whose
    # end cannot be checked, so one cut short looks whole to the client.
    close_delimited: bool = False


Handler = Callable[[Request], Answer]


class RequestLog(Protocol):
    """Where a service records every request it answered (the simulated fabric)."""

    def _record(self, request: Request) -> None: ...


class Service:
    """One simulated endpoint: a threaded HTTP server plus routes and faults."""

    def __init__(self, name: str, fabric: RequestLog, host: str = "127.0.0.1", port: int = 0):
        self.name = name
        self.fabric = fabric
        self.host = host
        self.port = port
        self.delay = 0.0  # added to every answer
        self._routes: list[tuple[str, str, Handler]] = []
        self._scripts: list[tuple[Optional[str], list[Answer]]] = []
        self._actions: list[tuple[str, Callable[[], object]]] = []
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

    def on_next(self, path_prefix: str, action: Callable[[], object]) -> None:
        """Run `action` when the next request under `path_prefix` arrives, before it is
        answered (scripted or routed): the goal state moving on just then, say."""
        with self._lock:
            self._actions.append((path_prefix, action))

    # -- routing -------------------------------------------------------------
    def route(self, method: str, path_prefix: str, handler: Handler) -> None:
        """Serve `method` requests whose path starts with `path_prefix` (latest added wins)."""
        self._routes.insert(0, (method.upper(), path_prefix, handler))

    def _answer(self, request: Request) -> Answer:
        with self._lock:
            due = [entry for entry in self._actions if request.path.startswith(entry[0])][:1]
            for entry in due:
                self._actions.remove(entry)
        for _, action in due:
            action()
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
            if answer.close_delimited:
                handler.send_header("Connection", "close")
                handler.close_connection = True
            else:
                handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the client gave up (its timeout); that is what a slow-reply test wants
