"""Review of the httpx layer as a server named by a crafted goal state would meet it.

A body that quotes the request (a proxy's or the HostGAPlugin's error page naming the
storage URL it was given) must not carry a SAS signature into an error, which reaches
the journal and the status document; and a server that trickles its reply's head must
not hold a call past its deadline.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator

import pytest

from azprov.errors import FabricTimeout, HttpStatusError
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import FabricHttp, Reply
from azprov.fabric.retry import Deadline, RetryPolicy

SECRET = "sv=2020-08-04&sig=Zm9vYmFyU0VDUkVUU0lHTkFUVVJF%3D"
SAS_URL = f"https://account.blob.core.windows.net/c/b.zip?{SECRET}"


def _server(reply: bytes, trickle: float = 0.0) -> Iterator[int]:
    """A one-connection server on loopback answering `reply` (a byte every `trickle` s)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            try:
                if not trickle:
                    connection.sendall(reply)
                    return
                for byte in reply:
                    if stop.wait(trickle):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def echoing_server() -> Iterator[int]:
    body = f"upstream GET {SAS_URL} failed:\r\n403 AuthenticationFailed".encode()
    head = f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    yield from _server(head + body)


def test_an_error_body_quoting_a_sas_url_loses_its_signature(echoing_server: int) -> None:
    http = FabricHttp(RetryPolicy(connect_timeout=2, read_timeout=2, max_attempts=1))
    with http, pytest.raises(HttpStatusError) as refused:
        http.call("package", "GET", f"http://127.0.0.1:{echoing_server}/a", Deadline(5))
    assert "Zm9vYmFy" not in str(refused.value)
    assert "sig=<redacted>" in str(refused.value)


def test_a_hostgaplugin_error_body_is_one_line_without_the_signature() -> None:
    plugin = HostPlugin(FabricHttp(), "http://127.0.0.1:32526", 10.0)
    body = f"could not fetch\n{SAS_URL}\nupstream said 403".encode()
    reply = Reply(status=500, headers={}, content=body, url="http://127.0.0.1:32526/status")
    with pytest.raises(HttpStatusError) as refused:
        plugin._checked("status upload", reply, None)  # type: ignore[arg-type]
    message = str(refused.value)
    assert "Zm9vYmFy" not in message
    assert "\n" not in message


@pytest.fixture
def trickling_server() -> Iterator[int]:
    # A header line a byte every 0.15 s: each read succeeds well within its timeout.
    head = b"HTTP/1.1 200 OK\r\n" + b"X-P: aaaaaaaaaa\r\n\r\n"
    yield from _server(head, trickle=0.15)


@pytest.mark.xfail(
    strict=True,
    reason="unfixed: the read timeout is per read and the deadline is checked only between "
    "body chunks, so a reply head trickled a byte at a time (up to httpcore's 100 KiB of "
    "head) holds the call for as long as the server likes (a storage URL from the goal state)",
)
def test_a_reply_head_trickled_byte_by_byte_still_ends_at_the_deadline(
    trickling_server: int,
) -> None:
    http = FabricHttp(RetryPolicy(connect_timeout=1, read_timeout=1, max_attempts=1))
    began = time.monotonic()
    with http, pytest.raises(FabricTimeout):
        url = f"http://127.0.0.1:{trickling_server}/b.zip?{SECRET}"
        http.call("package", "GET", url, Deadline(1.0))
    assert time.monotonic() - began < 3.0
