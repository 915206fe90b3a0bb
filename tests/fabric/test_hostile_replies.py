"""Fabric replies built to hang or crash a client: each is retried or refused, never fatal."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from azprov.errors import FabricError
from azprov.fabric.http import Deadline, FabricHttp, RetryPolicy
from azprov.fabric.xmldoc import parse_xml
from azprov.simulator import Answer


def test_unicode_retry_after_falls_back_to_backoff(fabric):
    fabric.imds.script([Answer(503, headers={"Retry-After": "²"})], "/metadata/instance")
    with FabricHttp() as http:
        from azprov.fabric.imds import Imds

        metadata = Imds(http, fabric.imds_url, 10).instance_metadata()
    assert metadata.computer_name == fabric.spec.computer_name


def test_a_trickling_reply_cannot_outlive_the_deadline():
    """A server that sends one byte every 0.3 s: each read is quick, the call is not."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                listener.settimeout(0.2)
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(100):
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break
                    time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with (
            FabricHttp(RetryPolicy(read_timeout=1)) as http,
            pytest.raises(FabricError, match="within 2 s"),
        ):
            http.call("trickle", "GET", f"http://127.0.0.1:{port}/", Deadline(2))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("encoding", ["x-foo", "utf-7", "cp932"])
def test_unreadable_xml_encodings_are_fabric_errors(encoding):
    with pytest.raises(FabricError, match="goal state"):
        parse_xml(
            f'<?xml version="1.0" encoding="{encoding}"?><GoalState/>'.encode(), "goal state"
        )


def test_deeply_nested_imds_json_is_retried_not_a_crash(fabric):
    from azprov.fabric.imds import Imds

    fabric.imds.script([Answer(200, b"[" * 200000)], "/metadata/instance")
    with FabricHttp() as http:
        assert Imds(http, fabric.imds_url, 10).instance_metadata().computer_name == "simvm"
