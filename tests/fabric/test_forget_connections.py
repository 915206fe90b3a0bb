"""FabricHttp.forget_connections: after a pool VM's network changed, no request rides a
connection made before (it would wait out its read timeout on a vanished NIC)."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from azprov.fabric.http import FabricHttp
from azprov.fabric.retry import Deadline

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    """A keep-alive HTTP server on loopback that records the client port of each connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    peers: list[int] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            try:
                while not stop.is_set():
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(REPLY)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                continue
            peers.append(peer[1])
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/", peers
    stop.set()
    thread.join()
    listener.close()


def _get(http: FabricHttp, url: str) -> bytes:
    return http.call("probe", "GET", url, Deadline(5)).content


def test_requests_after_forgetting_open_a_new_connection(server):
    url, peers = server
    with FabricHttp() as http:
        assert _get(http, url) == b"ok" and _get(http, url) == b"ok"
        assert len(peers) == 1  # kept alive: both on one connection
        http.forget_connections()
        assert _get(http, url) == b"ok"
        assert len(peers) == 2 and peers[0] != peers[1]
