"""Telling the host (KVP) and the platform (health report) how provisioning went.

`azprov report-ready` and `azprov report-failure TEXT` are for images that
only need to tell Azure they are up (the seed document's job), with the
retry, 410 and escaping behaviour of the full agent; `provision` reports its
own failures through `report_failure` too, so there is one way to do it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from azprov.errors import AzprovError, ReportableError
from azprov.fabric.client import Fabric, open_fabric
from azprov.fabric.wireserver import Health
from azprov.host.leases import wireserver_endpoint

if TYPE_CHECKING:
    from azprov.config import Config
    from azprov.fabric.models import GoalState
    from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

KVP_KEY = "PROVISIONING_REPORT"


def open_configured_fabric(root: TargetRoot, config: Config) -> Fabric:
    """The fabric clients, the WireServer found from the config or the root's DHCP leases."""
    return open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path))


def report_ready(root: TargetRoot, config: Config) -> None:
    with open_configured_fabric(root, config) as fabric:
        fabric.wireserver.report_health(Health.ready())


def report_failure_text(root: TargetRoot, config: Config, text: str) -> None:
    """`report-failure TEXT`: NotReady/ProvisioningFailed with TEXT as the reason (and KVP)."""
    from azprov.host.identity import try_vm_id  # report-ready needs neither uuid nor KVP

    error = ReportableError(text, reason=text)
    with open_configured_fabric(root, config) as fabric:
        report_failure(root, fabric, error, try_vm_id(root), raise_unreported=True)


def report_failure(
    root: TargetRoot,
    fabric: Optional[Fabric],
    error: ReportableError,
    vm_id: Optional[str],
    goal_state: Optional[GoalState] = None,
    *,
    raise_unreported: bool = False,
) -> str:
    """The report line for `error`, written to KVP and, when a fabric is given, posted
    as NotReady; returns the line. A failed post is logged (or raised if asked)."""
    from azprov.host.kvp import write_kvp

    line = error.report_line(vm_id)
    try:
        if fabric is not None:
            fabric.wireserver.report_health(Health.failed(line), goal_state)
    except AzprovError as report_error:
        if raise_unreported:
            raise
        log.error("could not report the failure: %s", report_error)
    finally:
        # After the post: KVP waits for its lock (up to 2 s), the platform should not.
        write_kvp(root, KVP_KEY, line)
    return line


def report_success(root: TargetRoot, vm_id: str) -> str:
    """The success line in KVP (Ready itself was posted by the flow)."""
    from azprov.errors import report_line
    from azprov.host.kvp import write_kvp

    line = report_line("success", {}, vm_id)
    write_kvp(root, KVP_KEY, line)
    return line
