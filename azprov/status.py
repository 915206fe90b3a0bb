"""`azprov status`: is this VM provisioned, when, and how did the last run go."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from azprov.host import state
from azprov.host.identity import try_vm_id
from azprov.host.root import TargetRoot
from azprov.printable import quoted


def collect_status(root: TargetRoot) -> dict[str, Any]:
    vm_id = try_vm_id(root)
    marker = state.provisioned_record(root) or {}
    last = state.last_run(root) or {}
    return {
        "vm_id": vm_id,
        "provisioned": bool(vm_id) and marker.get("vm_id") == vm_id,
        "provisioned_vm_id": marker.get("vm_id"),
        "provisioned_at": marker.get("provisioned_at"),
        "admin_user": marker.get("admin_user"),
        "last_run": last or None,
        "pool": pool_status(root, marker, vm_id),
    }


def pool_status(
    root: TargetRoot, marker: dict[str, Any], vm_id: Optional[str]
) -> Optional[dict[str, Any]]:
    """A pre-provisioned pool VM: the pool, its phase and how long it waited (or waits).
    Only this VM's records count: an image may carry another VM's (captured, planted)."""
    if vm_id is None:
        return None
    waiting = state.pool_record(root, vm_id)
    done = marker.get("pool") if marker.get("vm_id") == vm_id else None
    # Both: a run killed between the provisioned marker and the pool record's removal.
    # The VM is provisioned; no later boot looks at the record again.
    if isinstance(done, dict):
        return {**done, "phase": "handed over"}
    if waiting is None:
        return None
    ready = waiting.get("ready_at")
    shown = _utc(ready)
    since = time.time() - ready if shown is not None and isinstance(ready, (int, float)) else None
    return {
        "kind": waiting.get("kind"),
        "phase": waiting.get("phase"),
        "ready_at": shown,
        "waiting_seconds": round(since, 1) if since is not None else None,
    }


def _utc(seconds: object) -> Optional[str]:
    if not isinstance(seconds, (int, float)):
        return None
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):  # a record's number no time_t can hold
        return None


def render_status(root: TargetRoot, as_json: bool) -> str:
    status = collect_status(root)
    if as_json:
        return json.dumps(status, indent=2, sort_keys=True)
    when = f"yes, at {status['provisioned_at'] or 'an unrecorded time'}"
    lines = [
        f"VM ID:        {status['vm_id'] or 'unknown (no /sys/class/dmi/id/product_uuid)'}",
        f"Provisioned:  {when if status['provisioned'] else 'no'}",
    ]
    if status["provisioned_vm_id"] and not status["provisioned"]:
        lines.append(
            f"              (the marker is for another VM: {status['provisioned_vm_id']})"
        )
    pool = {key: quoted(str(value)) for key, value in (status["pool"] or {}).items()}
    if pool and pool.get("phase") == "handed over":
        lines.append(
            f"Pool:         {pool.get('kind')}, handed over after {pool.get('waited_seconds')} s "
            f"in the pool (its Ready at {pool.get('ready_at')})"
        )
    elif pool:
        lines.append(
            f"Pool:         {pool.get('kind')}, {pool.get('phase')} since its Ready at "
            f"{pool.get('ready_at')} ({pool.get('waiting_seconds')} s)"
        )
    if status["admin_user"]:
        lines.append(f"Admin user:   {status['admin_user']}")
    last = status["last_run"]
    if last:
        lines.append(
            f"Last run:     {last.get('result')} at {last.get('finished_at')} ({last.get('seconds')} s)"
        )
        lines.append(f"Last report:  {last.get('report')}")
        for name, seconds in (last.get("phases") or {}).items():
            lines.append(f"  {name:<18}{seconds:8.3f} s")
    else:
        lines.append("Last run:     none recorded")
    return "\n".join(lines)
