"""The guard that keeps every test's packets off the real Azure endpoints, in the
test process and in every Python process a test starts. Nothing here sends a
packet: each call is refused before the socket is used, and every socket here is
bound to the loopback device first, so even a broken guard could not send one out.

(Before the guard covered connect_ex, sendto and sendmsg, the UDP cases here
would have sent a datagram, which the loopback binding kept on this machine.)"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import REAL_AZURE_ADDRESSES

SENDS = {
    "connect": "s.connect((ADDRESS, 80))",
    "connect_ex": "s.connect_ex((ADDRESS, 80))",
    "sendto": "s.sendto(b'x', (ADDRESS, 53))",
    "sendto_flags": "s.sendto(b'x', 0, (ADDRESS, 53))",
    "sendmsg": "s.sendmsg([b'x'], [], 0, (ADDRESS, 53))",
}


def _socket_for(how: str) -> socket.socket:
    kind = socket.SOCK_STREAM if how.startswith("connect") else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
    return sock


@pytest.mark.parametrize("address", sorted(REAL_AZURE_ADDRESSES))
@pytest.mark.parametrize("how", sorted(SENDS))
def test_the_test_process_cannot_reach_azure(how: str, address: str) -> None:
    with _socket_for(how) as s, pytest.raises(AssertionError, match="real Azure endpoint"):
        exec(SENDS[how], {"s": s, "ADDRESS": address})


@pytest.mark.parametrize("how", sorted(SENDS))
def test_a_child_python_process_cannot_reach_azure(how: str) -> None:
    kind = "SOCK_STREAM" if how.startswith("connect") else "SOCK_DGRAM"
    code = (
        f"import socket\ns = socket.socket(socket.AF_INET, socket.{kind})\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'lo')\n"
        f"ADDRESS = '168.63.129.16'\n{SENDS[how]}\nprint('sent')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 99, result
    assert "TEST GUARD" in result.stderr and "sent" not in result.stdout


def test_loopback_still_works() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"ok", receiver.getsockname())
        assert receiver.recv(2) == b"ok"
