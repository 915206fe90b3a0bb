"""Which pre-provisioned pool a VM is in, from ovf-env.xml and IMDS (azure-fabric.md §7).

The platform says it twice: ovf-env's PlatformSettings (`PreprovisionedVm`,
`PreprovisionedVMType`) and IMDS's `extended.compute.ppsType`. The kinds are
tried in the order the platform's own agent tries them (Savable, then OS disk,
then Running), but where the two sources disagree azprov refuses to pick one:
provisioning the wrong way leaves a VM nobody can log in to, silently.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from azprov.errors import ReportableError
from azprov.fabric.imds import InstanceMetadata
from azprov.fabric.ovf import OvfEnv
from azprov.host import state
from azprov.host.root import TargetRoot

if TYPE_CHECKING:
    from azprov.gather import Gathered

log = logging.getLogger(__name__)


class PoolKind(enum.Enum):
    """The platform's names (ppsType / PreprovisionedVMType)."""

    NONE = "None"
    RUNNING = "Running"
    SAVABLE = "Savable"
    OS_DISK = "PreprovisionedOSDisk"


class PoolKindUnclear(ReportableError):
    """ovf-env.xml and IMDS (or ovf-env.xml's own two settings) name different pools."""

    reason = "pool_kind_contradictory"


def _from_ovf(ovf: Optional[OvfEnv]) -> Optional[PoolKind]:
    """What ovf-env.xml says, or None when it says nothing."""
    if ovf is None:
        return None
    flag, named = ovf.preprovisioned_vm, ovf.preprovisioned_vm_type
    kind = PoolKind(named) if named is not None else None
    if flag is True and kind is PoolKind.NONE:
        raise PoolKindUnclear(
            "ovf-env.xml says PreprovisionedVm=true but PreprovisionedVMType='None'",
            field="ovf-env.PreprovisionedVMType",
            value=named,
        )
    if flag is False and kind not in (None, PoolKind.NONE):
        raise PoolKindUnclear(
            f"ovf-env.xml says PreprovisionedVm=false but PreprovisionedVMType={named!r}",
            field="ovf-env.PreprovisionedVMType",
            value=named,
        )
    if kind is not None:
        return kind
    if flag is None:
        return None
    # A pool VM from before the type was sent: PreprovisionedVm alone means Running
    # (unless IMDS names the kind: see pool_kind).
    return PoolKind.RUNNING if flag else PoolKind.NONE


def pool_kind(ovf: Optional[OvfEnv], imds: InstanceMetadata) -> PoolKind:
    """The pool this VM is in (PoolKind.NONE: none), or PoolKindUnclear."""
    from_ovf = _from_ovf(ovf)
    from_imds = PoolKind(imds.pps_type) if imds.pps_type is not None else None
    if _pool_of_no_kind(ovf) and from_imds is not None and from_imds is not PoolKind.NONE:
        return from_imds  # "a pool VM", with IMDS naming which (the platform agent's order)
    if from_ovf is not None and from_imds is not None and from_ovf is not from_imds:
        raise PoolKindUnclear(
            f"ovf-env.xml says pool {from_ovf.value!r} but IMDS extended.compute.ppsType "
            f"says {from_imds.value!r}",
            field="imds.extended.compute.ppsType",
            value=from_imds.value,
        )
    return from_ovf or from_imds or PoolKind.NONE


def pool_entry(root: TargetRoot, vm_id: str, gathered: Gathered) -> Optional[dict[str, Any]]:
    """This VM's pool record: the marker of an earlier boot (resume), a new record when
    the gathered inputs name a pool, or None for a VM in no pool (PoolKindUnclear when
    the platform's two sources disagree). Reads one small file: every VM pays this."""
    marker = state.pool_record(root, vm_id)
    if marker is not None and marker.get("kind") in KINDS and "ready_at" in marker:
        log.info("resuming in the %s pool (Ready reported at %s)", marker["kind"], _at(marker))
        return marker
    kind = pool_kind(gathered.media(), gathered.metadata())
    if kind is PoolKind.NONE:
        return None
    return {"vm_id": vm_id, "kind": kind.value, "phase": "reporting_ready"}


def _pool_of_no_kind(ovf: Optional[OvfEnv]) -> bool:
    """PreprovisionedVm=true alone: a pool VM, not which pool (Running unless IMDS says)."""
    return ovf is not None and ovf.preprovisioned_vm is True and ovf.preprovisioned_vm_type is None


KINDS = frozenset(kind.value for kind in PoolKind if kind is not PoolKind.NONE)


def pool_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """What the provisioned marker keeps of the wait: the kind, and seconds in the pool."""
    ready, data, at = entry.get("ready_at"), entry.get("data_at"), _at(entry)
    waited = None
    if at != "unknown" and isinstance(ready, (int, float)) and isinstance(data, (int, float)):
        waited = round(data - ready, 3)
    return {"kind": entry.get("kind"), "ready_at": at, "waited_seconds": waited}


def _at(entry: dict[str, Any]) -> str:
    ready = entry.get("ready_at")
    if not isinstance(ready, (int, float)):
        return "unknown"
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ready))
    except (OverflowError, OSError, ValueError):  # a record's number no time_t can hold
        return "unknown"
