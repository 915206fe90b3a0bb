"""Network faults for tests that no simulated service can produce by itself.

- `ConnectionRecorder`: a loopback listener that records every connection made
  to it (the "proxy" in the proxy tests: it must see nothing).
- `isolated_fabric()`: a SimulatedFabric whose listeners live in a fresh
  network namespace whose loopback is down, so a client that joins the
  namespace gets a real ENETUNREACH until `bring_up()` is called.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Optional

from azprov.simulator import SimulatedFabric

CLONE_NEWNET = 0x40000000
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


class ConnectionRecorder:
    """Accepts TCP connections on 127.0.0.1 (or `host`, e.g. ::1), records what arrived,
    then closes them."""

    def __init__(
        self,
        reply: Optional[bytes] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
        host: str = "127.0.0.1",
    ) -> None:
        self.reply = reply  # None: close the connection without a word
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.received.append(data)
                # A plain error, in case the client really did use us as a proxy.
                if self.reply is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(self.reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


class IsolatedFabric:
    """A SimulatedFabric listening inside its own network namespace (loopback down)."""

    def __init__(self, fabric: SimulatedFabric, ns_fd: int) -> None:
        self.fabric = fabric
        self.ns_fd = ns_fd

    def nsenter(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace (pass `ns_fd` to it)."""
        return ["nsenter", f"--net=/proc/self/fd/{self.ns_fd}"]

    def bring_up(self) -> None:
        """Bring the namespace's loopback up: 127.0.0.1 becomes routable."""
        subprocess.run(
            [*self.nsenter(), "ip", "link", "set", "lo", "up"],
            pass_fds=[self.ns_fd],
            check=True,
            timeout=10,
        )

    def close(self) -> None:
        self.fabric.stop()
        os.close(self.ns_fd)


def isolated_fabric() -> Optional[IsolatedFabric]:
    """Start a fabric in a new network namespace, or None where namespaces are not allowed.

    unshare(CLONE_NEWNET) changes only the calling thread, so a short-lived
    thread enters the new namespace and creates the listening sockets there; a
    socket stays in the namespace it was created in. The rest of the test
    process keeps the host's network.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, object] = {}

    def enter() -> None:
        if libc.unshare(CLONE_NEWNET) != 0:
            box["error"] = os.strerror(ctypes.get_errno())
            return
        box["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        box["fabric"] = SimulatedFabric().start()

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if "error" in box:
        return None
    fd = box["fd"]
    fabric = box["fabric"]
    assert isinstance(fd, int) and isinstance(fabric, SimulatedFabric)
    return IsolatedFabric(fabric, fd)


def tools_for_namespaces() -> bool:
    """nsenter and ip are installed (util-linux and iproute2)."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
    return all(shutil.which(tool, path=path) for tool in ("nsenter", "ip"))


class TlsServer:
    """A one-route HTTPS server on 127.0.0.1 with a throwaway self-signed certificate."""

    def __init__(self, directory: Path) -> None:
        self.certificate = directory / "server.crt"
        key = directory / "server.key"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                str(key),
                "-out",
                str(self.certificate),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate, key)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
