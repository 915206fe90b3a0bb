"""Loaded by every Python process the tests start (PYTHONPATH, set in tests/conftest.py).

No test may send a packet to the real Azure endpoints. If any code path in a
child process tries to connect to one, the process stops at once with a
message the test will show, before a single packet leaves.
"""

import os
import socket
import sys

_REAL_AZURE = frozenset({"168.63.129.16", "169.254.169.254"})
_real_connect = socket.socket.connect


def _guarded_connect(sock: socket.socket, address: object) -> None:
    if isinstance(address, tuple) and address and address[0] in _REAL_AZURE:
        sys.stderr.write(
            f"TEST GUARD: refused a connection to the real Azure endpoint {address}\n"
        )
        sys.stderr.flush()
        os._exit(99)
    _real_connect(sock, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
