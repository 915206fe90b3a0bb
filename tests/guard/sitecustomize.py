"""Loaded by every Python process the tests start (PYTHONPATH, set in tests/conftest.py).

No test may send a packet to the real Azure endpoints. If any code path in a
child process tries to connect to one, the process stops at once with a
message the test will show, before a single packet leaves.
"""

import os
import socket
import sys

_REAL_AZURE = frozenset({"168.63.129.16", "169.254.169.254"})


def _refuse(address: object) -> None:
    if isinstance(address, tuple) and address and address[0] in _REAL_AZURE:
        sys.stderr.write(
            f"TEST GUARD: refused a connection to the real Azure endpoint {address}\n"
        )
        sys.stderr.flush()
        os._exit(99)


# Every way a Python socket names a peer: connect (TCP, and UDP's default peer),
# connect_ex, and the address of a datagram sent with sendto/sendmsg.
_real = {
    name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "sendto", "sendmsg")
}


def _connect(sock: socket.socket, address: object) -> None:
    _refuse(address)
    _real["connect"](sock, address)


def _connect_ex(sock: socket.socket, address: object) -> int:
    _refuse(address)
    return int(_real["connect_ex"](sock, address))


def _sendto(sock: socket.socket, data: bytes, *rest: object) -> int:
    _refuse(rest[-1] if rest else None)
    return int(_real["sendto"](sock, data, *rest))


def _sendmsg(sock: socket.socket, buffers: object, *rest: object) -> int:
    _refuse(rest[2] if len(rest) > 2 else None)
    return int(_real["sendmsg"](sock, buffers, *rest))


socket.socket.connect = _connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign,assignment]
socket.socket.sendto = _sendto  # type: ignore[method-assign,assignment]
socket.socket.sendmsg = _sendmsg  # type: ignore[method-assign,assignment]
