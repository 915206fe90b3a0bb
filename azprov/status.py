"""`azprov status`: is this VM provisioned, when, and how did the last run go."""

from __future__ import annotations

import json
from typing import Any

from azprov.host import state
from azprov.host.identity import try_vm_id
from azprov.host.root import TargetRoot


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
    }


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
