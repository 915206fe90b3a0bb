"""azprov's own memory under <root>/var/lib/azprov: the provisioned marker and the last run.

The marker holds the VM ID it was written for, so an image captured and
redeployed (a new VM ID) provisions again. It is written only after the
platform acknowledged Ready.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

STATE_DIR = "/var/lib/azprov"
MARKER = f"{STATE_DIR}/provisioned.json"
LAST_RUN = f"{STATE_DIR}/last-run.json"


def _read_json(root: TargetRoot, path: str) -> Optional[dict[str, Any]]:
    try:
        value = json.loads((root / path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return value if isinstance(value, dict) else None


def _write_json(root: TargetRoot, path: str, value: dict[str, Any]) -> None:
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(root / path, data, mode=0o600, dir_mode=0o700)


def provisioned_vm_id(root: TargetRoot) -> Optional[str]:
    """The VM ID this root was provisioned for, or None."""
    marker = _read_json(root, MARKER)
    vm_id = marker.get("vm_id") if marker else None
    return vm_id if isinstance(vm_id, str) else None


def provisioned_record(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, MARKER)


def mark_provisioned(root: TargetRoot, vm_id: str, when: str) -> None:
    _write_json(root, MARKER, {"vm_id": vm_id, "provisioned_at": when})


def last_run(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, LAST_RUN)


def save_run(root: TargetRoot, record: dict[str, Any]) -> None:
    """Keep a summary of this run for `azprov status` (best effort: never fails a run)."""
    try:
        _write_json(root, LAST_RUN, record)
    except OSError as exc:
        log.warning("could not save %s: %s", LAST_RUN, exc.strerror)
