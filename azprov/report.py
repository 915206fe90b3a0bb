"""Standalone health reports: `azprov report-ready` and `azprov report-failure TEXT`.

For images that only need to tell Azure they are up (the seed document's
job), with the retry, 410 and escaping behaviour of the full agent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from azprov.fabric.client import open_fabric
from azprov.fabric.wireserver import Health
from azprov.host.leases import wireserver_endpoint

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)


def report_ready(root: TargetRoot, config: Config) -> None:
    with open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path)) as fabric:
        fabric.wireserver.report_health(Health.ready())


def report_failure(root: TargetRoot, config: Config, text: str) -> None:
    """Report NotReady/ProvisioningFailed with TEXT as the reason (and to KVP)."""
    # Imported here: report-ready needs neither the VM ID (uuid, platform) nor KVP.
    from azprov.errors import ReportableError
    from azprov.host.identity import try_vm_id
    from azprov.host.kvp import write_kvp

    error = ReportableError(text, reason=text)
    line = error.report_line(try_vm_id(root))
    write_kvp(root, "PROVISIONING_REPORT", line)
    with open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path)) as fabric:
        fabric.wireserver.report_health(Health.failed(line))
