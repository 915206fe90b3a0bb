"""Fabric endpoints: `host`, `host:port` or `[v6]:port`, and the base URL built from one.

Finding the WireServer's address (DHCP option 245 in the lease files) is host
work: see `azprov.host.leases`.
"""

from __future__ import annotations

import logging

from azprov.config_values import parse_endpoint

log = logging.getLogger(__name__)


def base_url(endpoint: str, default_port: int) -> str:
    """`http://host:port` for an endpoint string, using `default_port` when it has none."""
    host, port = parse_endpoint(endpoint)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or default_port}"
