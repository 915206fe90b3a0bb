"""Azure storage reached directly (manifests, packages, the status blob): one short try.

Most VMs have no route to storage: a direct request there does not fail, it
hangs until its connect timeout. So a direct request is tried once, with a
connect timeout of its own (`[extensions] storage_connect_timeout`, a second
or two), and never retried here: the caller goes to the HostGAPlugin at once.
"""

from __future__ import annotations

from typing import IO, Any, Mapping

from azprov.fabric.http import Deadline, FabricHttp, Reply, RetryPolicy


class Storage:
    """Direct storage requests through `http`, each one try within `timeout` seconds."""

    def __init__(self, http: FabricHttp, connect_timeout: float, timeout: float) -> None:
        self.http = http
        self.timeout = timeout
        self.policy = RetryPolicy(
            connect_timeout=connect_timeout, read_timeout=timeout, max_attempts=1
        )

    def get(self, what: str, url: str, *, max_bytes: int, sink: IO[bytes] | None = None) -> Reply:
        """GET `url`; the body goes to `sink` if given. FabricError when it did not work."""
        return self._once(what, "GET", url, max_bytes=max_bytes, sink=sink)

    def put(self, what: str, url: str, headers: Mapping[str, str], content: bytes) -> Reply:
        return self._once(what, "PUT", url, headers=headers, content=content)

    def _once(self, what: str, method: str, url: str, **options: Any) -> Reply:
        reply: Reply = self.http.call(
            what, method, url, Deadline(self.timeout), policy=self.policy, **options
        )
        return reply
