"""Building the fabric clients from the configuration: one HTTP client for all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from azprov.fabric.http import FabricHttp, RetryPolicy
from azprov.fabric.wireserver import WireServer

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.fabric.imds import Imds


class Fabric:
    """The WireServer and IMDS clients of one run, sharing one HTTP client.

    The IMDS client is built on first use: `report-ready` never talks to IMDS
    and should not pay for importing it.
    """

    def __init__(
        self,
        http: FabricHttp,
        wireserver: WireServer,
        imds: Optional[Imds] = None,
        *,
        imds_url: str = "",
        imds_timeout: float = 0.0,
    ) -> None:
        self.http = http
        self.wireserver = wireserver
        self._imds = imds
        self._imds_settings = (imds_url, imds_timeout)

    @property
    def imds(self) -> Imds:
        if self._imds is None:
            from azprov.fabric.imds import Imds

            self._imds = Imds(self.http, *self._imds_settings)
        return self._imds

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_fabric(config: Config, endpoint: str, policy: RetryPolicy | None = None) -> Fabric:
    """Clients for the WireServer at `endpoint` (found by `host.leases`) and IMDS."""
    http = FabricHttp(policy)
    return Fabric(
        http=http,
        wireserver=WireServer(
            http, endpoint, config.wireserver.total_timeout, config.wireserver.hostplugin_port
        ),
        imds_url=config.imds.url,
        imds_timeout=config.imds.total_timeout,
    )
