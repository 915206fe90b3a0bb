"""azprov's own memory under <root>/var/lib/azprov: the provisioned marker and the last run.

The marker holds the VM ID it was written for, so an image captured and
redeployed (a new VM ID) provisions again. It is written only after the
platform acknowledged Ready.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from typing import Any, Iterator, Optional

from azprov.host.files import write_atomic
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

STATE_DIR = "/var/lib/azprov"
MARKER = f"{STATE_DIR}/provisioned.json"
LAST_RUN = f"{STATE_DIR}/last-run.json"
# Written when azprov creates the admin user, before Ready: a re-run after a
# crash must still know the user was azprov's (deprovision --user relies on it).
CREATED_USER = f"{STATE_DIR}/created-user.json"


@contextlib.contextmanager
def run_lock(root: TargetRoot) -> Iterator[None]:
    """One azprov run at a time per root (the unit and a manual run must not interleave)."""
    directory = root / STATE_DIR
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    data = (json.dumps(value, indent=2) + "\n").encode()
    write_atomic(root / path, data, mode=0o600, dir_mode=0o700)


def provisioned_vm_id(root: TargetRoot) -> Optional[str]:
    """The VM ID this root was provisioned for, or None."""
    marker = _read_json(root, MARKER)
    vm_id = marker.get("vm_id") if marker else None
    return vm_id if isinstance(vm_id, str) else None


def provisioned_record(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, MARKER)


def remember_created_user(root: TargetRoot, vm_id: str, user: str, created: bool) -> bool:
    """True when azprov created `user` for this VM, in this run or an interrupted earlier one."""
    if created:
        _write_json(root, CREATED_USER, {"vm_id": vm_id, "admin_user": user})
        return True
    earlier = _read_json(root, CREATED_USER)
    return bool(earlier and earlier.get("vm_id") == vm_id and earlier.get("admin_user") == user)


def mark_provisioned(
    root: TargetRoot,
    vm_id: str,
    when: str,
    admin_user: Optional[str] = None,
    user_created: bool = False,
    sudoers_file: Optional[str] = None,
) -> None:
    """Record that `vm_id` is provisioned (call only after Ready was acknowledged)."""
    _write_json(
        root,
        MARKER,
        {
            "vm_id": vm_id,
            "provisioned_at": when,
            "admin_user": admin_user,
            "user_created": user_created,
            "sudoers_file": sudoers_file,
        },
    )
    (root / CREATED_USER).unlink(missing_ok=True)


def last_run(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, LAST_RUN)


def save_run(root: TargetRoot, record: dict[str, Any]) -> None:
    """Keep a summary of this run for `azprov status` (best effort: never fails a run)."""
    try:
        _write_json(root, LAST_RUN, record)
    except OSError as exc:
        log.warning("could not save %s: %s", LAST_RUN, exc.strerror)
