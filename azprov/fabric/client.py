"""Building the fabric clients from the configuration: one HTTP client for all of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from azprov.config import Config
from azprov.fabric.endpoints import wireserver_endpoint
from azprov.fabric.http import FabricHttp, RetryPolicy
from azprov.fabric.imds import Imds
from azprov.fabric.wireserver import WireServer


@dataclasses.dataclass
class Fabric:
    http: FabricHttp
    wireserver: WireServer
    imds: Imds

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Fabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_fabric(config: Config, root: Path, policy: RetryPolicy | None = None) -> Fabric:
    """Clients for the WireServer (address from config, DHCP or default) and IMDS."""
    http = FabricHttp(policy)
    endpoint = wireserver_endpoint(config.wireserver.endpoint, root)
    return Fabric(
        http=http,
        wireserver=WireServer(
            http, endpoint, config.wireserver.total_timeout, config.wireserver.hostplugin_port
        ),
        imds=Imds(http, config.imds.url, config.imds.total_timeout),
    )
