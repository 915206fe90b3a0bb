"""Building the fabric clients from the configuration: one HTTP client for all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from azprov.fabric.http import FabricHttp, RetryPolicy
from azprov.fabric.wireserver import WireServer

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.fabric.hostplugin import HostPlugin
    from azprov.fabric.imds import Imds
    from azprov.fabric.storage import Storage


class Fabric:
    """The WireServer, IMDS, HostGAPlugin and direct-storage clients of one run,
    sharing one HTTP client.

    All but the WireServer are built on first use: `report-ready` never talks
    to IMDS and should not pay for importing it. The HostGAPlugin and storage
    clients each have their own budget (`channel_timeout`); a direct storage
    request gets one try with a short connect timeout.
    """

    def __init__(
        self,
        http: FabricHttp,
        wireserver: WireServer,
        imds: Optional[Imds] = None,
        *,
        imds_url: str = "",
        imds_timeout: float = 0.0,
        channel_timeout: float = 10.0,
        storage_connect_timeout: float = 1.5,
    ) -> None:
        self.http = http
        self.wireserver = wireserver
        self._imds = imds
        self._imds_settings = (imds_url, imds_timeout)
        self._channel_timeout = channel_timeout
        self._storage_connect_timeout = storage_connect_timeout
        self._hostplugin: Optional[HostPlugin] = None
        self._storage: Optional[Storage] = None

    @property
    def imds(self) -> Imds:
        if self._imds is None:
            from azprov.fabric.imds import Imds

            self._imds = Imds(self.http, *self._imds_settings)
        return self._imds

    @property
    def hostplugin(self) -> HostPlugin:
        """The HostGAPlugin beside the WireServer (artifacts and status through the host)."""
        if self._hostplugin is None:
            from azprov.fabric.hostplugin import HostPlugin

            base = self.wireserver.hostplugin_base
            self._hostplugin = HostPlugin(self.http, base, self._channel_timeout)
        return self._hostplugin

    @property
    def storage(self) -> Storage:
        """Azure storage reached directly: one short try per request."""
        if self._storage is None:
            from azprov.fabric.storage import Storage

            self._storage = Storage(
                self.http, self._storage_connect_timeout, self._channel_timeout
            )
        return self._storage

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
        channel_timeout=config.extensions.channel_timeout,
        storage_connect_timeout=config.extensions.storage_connect_timeout,
    )
