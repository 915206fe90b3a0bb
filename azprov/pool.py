"""A pre-provisioned VM pool: Ready in the pool, wait for a customer, then their data.

The platform makes pool VMs before anyone asks for them (azure-fabric.md §7).
Such a VM must not provision the pool's placeholder identity: it reports Ready
for the pool's goal state with nothing changed (no user, keys, host name or
host keys), waits for the platform to hand it over, fetches the customer's
ovf-env.xml from IMDS `reprovisiondata`, and returns the customer's inputs to
the normal first-boot flow (`provision.py`), which applies them and posts the
final Ready. The marker (`state.POOL_MARKER`, written once the pool's Ready is
acknowledged) makes a reboot at any step resume waiting instead of reporting
in the pool again; the flow removes it after the final Ready.

How the hand-over looks from inside depends on the pool kind:
- Running: the primary NIC goes down and up (the switch to the customer's
  network), then the lease is renewed;
- Savable: the NIC is removed (the VM may be paused before the WireServer's
  reply reaches it) and a new one is hot-attached;
- OS disk: the host stops the VM; its next boot is an ordinary first boot.
Netlink is opened before the pool's Ready, so no link event is missed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from typing import Any, Optional
from urllib.parse import urlsplit

from azprov.config import Config
from azprov.errors import HostError, ReportableError, Terminated
from azprov.fabric.client import Fabric
from azprov.fabric.http import FabricUnreachable
from azprov.fabric.models import GoalState
from azprov.fabric.ovf import parse_ovf_env
from azprov.fabric.retry import Deadline
from azprov.fabric.wireserver import Health
from azprov.gather import Gathered, gather
from azprov.host import nic, state
from azprov.host.netlink import LinkWaitTimeout, LinkWatcher
from azprov.host.notify import StartTimeoutKeeper
from azprov.host.root import TargetRoot
from azprov.pool_kind import PoolKind, PoolKindUnclear, pool_kind
from azprov.run import RunRecord
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

# One reprovisiondata call (requests of up to 30 s, retried while IMDS answers 404):
# when its last try got no reply at all, the DHCP lease is renewed before the next.
POLL_WINDOW = 35.0
# How long a hot-attached NIC may take to get a lease that routes to the fabric.
NIC_LEASE_TIMEOUT = 60.0


class StillInPool(ReportableError):
    """After the hand-over, IMDS or the customer's ovf-env.xml still names a pool."""

    reason = "still_in_pool"


def wait_in_pool(
    fabric: Fabric,
    root: TargetRoot,
    config: Config,
    run: RunRecord,
    entry: dict[str, Any],
    goal_state: GoalState,
) -> Optional[Gathered]:
    """Ready in the pool (unless resumed), wait for the hand-over, and return the
    customer's inputs; None when this boot ends in the pool (an OS-disk pool VM, or
    a stop while waiting)."""
    kind = PoolKind(entry["kind"])
    try:
        with StartTimeoutKeeper():
            resumed = "ready_at" in entry
            if not resumed and not report_ready_in_pool(
                fabric, root, run, entry, kind, goal_state
            ):
                return None
            data = run.timed("pool_wait", poll_reprovision_data, fabric, root, entry)
    except Terminated:
        resumes = "resumes" if kind is not PoolKind.OS_DISK else "provisions as a first boot"
        log.info("stopped while waiting in the %s pool; the next boot %s", kind.value, resumes)
        return None
    advance(root, entry, "provisioning", data_at=time.time())
    gathered = gather(fabric, root, config, run, media=lambda: parse_ovf_env(data))
    try:
        still = pool_kind(gathered.media(), gathered.metadata())
    except PoolKindUnclear as exc:  # sources that disagree: at least one still names a pool
        raise StillInPool(f"after the hand-over the VM is still named a pool VM: {exc}") from None
    if still is not PoolKind.NONE:
        raise StillInPool(f"after the hand-over the VM is still in a {still.value} pool")
    return gathered


def report_ready_in_pool(
    fabric: Fabric,
    root: TargetRoot,
    run: RunRecord,
    entry: dict[str, Any],
    kind: PoolKind,
    goal_state: GoalState,
) -> bool:
    """Post the pool's Ready and wait for the hand-over's network change; False for an
    OS-disk pool VM (its next boot provisions)."""
    if kind is not PoolKind.OS_DISK:  # it keeps a record once Ready is acknowledged
        state.refuse_unwritable_pool_record(root)
    watching = kind in (PoolKind.RUNNING, PoolKind.SAVABLE) and root.live
    with LinkWatcher() if watching else contextlib.nullcontext() as links:
        primary = _primary_interface(root, fabric) if watching else None
        known = nic.interfaces(root) if watching else []
        log.info("this VM is in a %s pool: reporting Ready with nothing provisioned", kind.value)
        if kind is PoolKind.SAVABLE and links is not None and primary is not None:
            ready_or_unplugged(fabric, links, primary, goal_state, run)
        else:
            run.timed("pool_ready", fabric.wireserver.report_health, Health.ready(), goal_state)
        if kind is PoolKind.OS_DISK:
            wait_until_stopped(root)
            return False
        entry["ready_at"] = time.time()
        advance(root, entry, "waiting_for_network")
        if links is None or primary is None:
            log.info("%s pool: not waiting for the network change: %s", kind.value, _why(root))
        elif kind is PoolKind.RUNNING:
            links.wait_down_then_up(primary)
            renew_lease(root, [primary])
        else:
            _take_new_nic(root, fabric, links, [name for name in known if name != primary])
        fabric.http.forget_connections()  # made over the network the VM no longer has
    return True


def ready_or_unplugged(
    fabric: Fabric, links: LinkWatcher, primary: str, goal_state: GoalState, run: RunRecord
) -> None:
    """Savable: the platform may pause the VM and unplug its NIC as soon as it has the
    Ready, before its reply arrives. The NIC's removal is taken as the answer; the
    report's retries end then, so a late one cannot post a second Ready. The report
    runs in a daemon thread: a try in flight on the vanished NIC holds nothing up."""
    deadline = fabric.wireserver.deadline()
    outcome: list[BaseException | None] = []

    def post() -> None:
        try:
            run.timed(
                "pool_ready", fabric.wireserver.report_health, Health.ready(), goal_state, deadline
            )
            outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread, raised there
            outcome.append(exc)

    threading.Thread(target=post, name="azprov-pool-ready", daemon=True).start()
    log.info("waiting for the WireServer's answer to Ready, or for %s's removal", primary)
    try:
        while not outcome:
            try:
                links.wait_removed(primary, timeout=0.2, quiet=True)
            except LinkWaitTimeout:
                continue
            answered = "after" if outcome else "before"
            log.info("%s was removed %s the WireServer answered Ready", primary, answered)
            return
    finally:
        deadline.cancel()
    if outcome[0] is not None:
        raise outcome[0]
    links.wait_removed(primary)


def _take_new_nic(root: TargetRoot, fabric: Fabric, links: LinkWatcher, others: list[str]) -> None:
    """Bring each hot-attached NIC up with DHCP until one's lease routes to the fabric.

    `others`: the NICs the VM had beside the removed one, never candidates. The new
    NIC may well get the removed one's name (the same slot, or Azure's eth0 again).
    The kernel names a new NIC (eth0) before udev renames it (ens3): once udev has
    settled, the NICs not seen before are the candidates, by their current names."""
    addresses = _fabric_addresses(fabric)
    seen = set(others)
    while True:
        first = links.wait_new_link(seen)
        _settle_udev(root)
        for name in [name for name in nic.interfaces(root) if name not in seen] or [first]:
            seen.add(name)
            try:  # one NIC the image cannot configure or route fails alone: try the next
                log.info("%s", nic.bring_up_with_dhcp(root, name))
                routed = not addresses or nic.wait_for_route(
                    root, name, addresses, NIC_LEASE_TIMEOUT
                )
            except HostError as exc:
                log.warning("%s: %s", name, exc)
                continue
            if routed:
                log.info("%s routes to the fabric (%s): it is the primary NIC", name, addresses)
                return
            log.info("%s has no route to the fabric; waiting for another NIC", name)
        seen.add(first)


def _settle_udev(root: TargetRoot) -> None:
    if root.has_tool("udevadm"):
        root.run(
            ["udevadm", "settle", "--timeout=10"], what="udevadm settle", check=False, timeout=15
        )


def poll_reprovision_data(fabric: Fabric, root: TargetRoot, entry: dict[str, Any]) -> bytes:
    """The customer's ovf-env.xml: asked for until IMDS has it, for as long as it takes.
    A window whose last try got no reply renews the DHCP lease before the next."""
    advance(root, entry, "polling")
    log.info("waiting for the customer's data (IMDS reprovisiondata answers 404 until then)")
    while True:
        try:
            data = fabric.imds.reprovision_data(Deadline(POLL_WINDOW))
        except FabricUnreachable as exc:
            log.warning("%s; renewing the DHCP lease", exc)
            renew_lease(root)
            fabric.http.forget_connections()
            continue
        except ReportableError as exc:
            if exc.reason != "fabric_timeout":
                raise
            continue
        log.info("IMDS gave the customer's data (%d bytes)", len(data))
        return data


def renew_lease(root: TargetRoot, interfaces: Optional[list[str]] = None) -> None:
    """Best effort (every NIC when none is named): a renewal that fails leaves the next
    poll to tell (and retry)."""
    try:
        log.info(
            "%s",
            nic.renew_leases(root, nic.interfaces(root) if interfaces is None else interfaces),
        )
    except (HostError, OSError) as exc:
        log.warning("could not renew the DHCP lease: %s", exc)


def wait_until_stopped(root: TargetRoot) -> None:
    """OS-disk pool: Ready is all the platform wants; it stops the VM and its next boot
    provisions. Nothing is remembered: that boot is an ordinary first boot."""
    if root.skip_live("waiting for the host to stop this OS-disk pool VM"):
        return
    log.info("PreprovisionedOSDisk pool: Ready reported; waiting for the host to stop this VM")
    while True:
        time.sleep(3600)


def advance(root: TargetRoot, entry: dict[str, Any], phase: str, **fields: Any) -> None:
    """Record the pool phase (and how long it has waited) in the marker."""
    entry.update(phase=phase, phase_at=utc_timestamp(), **fields)
    state.save_pool_record(root, entry)


def _fabric_addresses(fabric: Fabric) -> list[str]:
    """The WireServer's and IMDS's addresses (a configured host name is not routable as is)."""
    hosts = [urlsplit(fabric.wireserver.base).hostname, urlsplit(fabric.imds.url).hostname]
    addresses = []
    for host in hosts:
        try:
            addresses.append(str(ipaddress.ip_address(host or "")))
        except ValueError:
            log.info("the fabric endpoint %r is not an IP address: not used to find the NIC", host)
    return addresses


def _primary_interface(root: TargetRoot, fabric: Fabric) -> Optional[str]:
    for address in _fabric_addresses(fabric):
        name = nic.route_interface(root, address)
        if name:
            return name
    log.warning("no interface routes to the fabric: cannot tell which NIC to watch")
    return None


def _why(root: TargetRoot) -> str:
    return "the target root is not the running system" if not root.live else "no primary NIC"
