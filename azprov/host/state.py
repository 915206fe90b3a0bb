"""azprov's own memory under <root>/var/lib/azprov: the provisioned marker and the last run.

The marker holds the VM ID it was written for, so an image captured and
redeployed (a new VM ID) provisions again. It is written only after the
platform acknowledged Ready.

These are azprov's own files: read and written only as regular files with no
link anywhere on their path, and never read past STATE_FILE_CAP.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import posixpath
import stat
from typing import Any, Iterator, Optional

from azprov.confined import Links, kind_of
from azprov.errors import HostError
from azprov.host.files import create_at, is_temp_name
from azprov.host.root import TargetRoot
from azprov.jsondoc import UnusableJson, parse_json

log = logging.getLogger(__name__)

STATE_DIR = "/var/lib/azprov"
LOCK = f"{STATE_DIR}/lock"
MARKER = f"{STATE_DIR}/provisioned.json"
LAST_RUN = f"{STATE_DIR}/last-run.json"
# A pre-provisioned pool VM that reported Ready in the pool (its VM ID, the pool kind,
# the phase it waits in): a reboot resumes waiting for the customer instead of
# reporting Ready in the pool again. Removed once the customer's Ready is acknowledged.
POOL_MARKER = f"{STATE_DIR}/pool.json"
# Written when azprov is about to create the admin user (before useradd runs): a
# re-run after a crash, even one right after useradd, must still know the user
# was azprov's (deprovision --user relies on it). The marker confirms it.
CREATED_USER = f"{STATE_DIR}/created-user.json"
# The state files hold a few hundred bytes (the run record, with its phase and
# command times, about 2 KB). Anything near this is not azprov's.
STATE_FILE_CAP = 1 << 20
# The directories provision writes into (by atomic replace) under its lock: a
# temporary file left in one by a kill is stale once the next run holds the lock.
# /var/lib/azprov is not among them: the extension runner writes there too.
WRITTEN_DIRS = ("/etc", "/etc/ssh", "/etc/ssh/sshd_config.d", "/etc/sudoers.d")


class StateUnwritable(HostError):
    """azprov cannot keep its state (the lock, the marker) in the target root:
    a read-only root, a full disk, a link or a file where its directory must be."""

    reason = "state_unwritable"


@contextlib.contextmanager
def run_lock(root: TargetRoot) -> Iterator[None]:
    """One azprov run at a time per root (the unit and a manual run must not interleave).

    StateUnwritable when the state directory or the lock cannot be made or opened
    for writing: a root that cannot hold the marker cannot be provisioned once.
    """
    with contextlib.ExitStack() as opened:
        try:
            _ensure_state_dir(root)
            with root.directory(STATE_DIR, create=False, links=Links.REFUSE) as dir_fd:
                create_at(dir_fd, "lock", 0o600)
            fd = opened.enter_context(root.open_regular(LOCK, links=Links.REFUSE, writable=True))
        except (OSError, HostError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StateUnwritable(
                f"azprov cannot keep its state in {STATE_DIR}: {detail}", path=STATE_DIR
            ) from None
        if fd is None:  # removed between its creation and the open
            raise StateUnwritable(f"{LOCK} disappeared while azprov opened it", path=LOCK)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor is closed
        _refuse_unwritable_files(root)
        yield


def _refuse_unwritable_files(
    root: TargetRoot, paths: tuple[str, ...] = (CREATED_USER, MARKER)
) -> None:
    """The files the run must write (the intent before useradd, the marker after Ready)
    are absent or regular: anything else there would fail the run halfway."""
    for path in paths:
        found = root.lstat(path, links=Links.REFUSE)
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise StateUnwritable(
                f"azprov cannot keep its state: {path} is {kind_of(found.st_mode)}", path=path
            )


def _ensure_state_dir(root: TargetRoot) -> None:
    """/var/lib/azprov, 0700; a parent the image lacks gets the usual 0755, not 0700."""
    if root.lstat(STATE_DIR, links=Links.REFUSE) is None:
        with root.directory(posixpath.dirname(STATE_DIR), links=Links.REFUSE):
            pass
        with root.directory(STATE_DIR, mode=0o700, links=Links.REFUSE):
            pass


def _read_json(root: TargetRoot, path: str) -> Optional[dict[str, Any]]:
    try:
        data = root.read(path, STATE_FILE_CAP, links=Links.REFUSE)
        if data is None:
            return None
        value = parse_json(data, path)
    except (HostError, UnusableJson) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return value if isinstance(value, dict) else None


def _write_json(root: TargetRoot, path: str, value: dict[str, Any]) -> None:
    data = (json.dumps(value, indent=2) + "\n").encode()
    _ensure_state_dir(root)
    try:
        root.write(path, data, mode=0o600, links=Links.REFUSE)
    except OSError as exc:  # a directory put in its place, a full disk
        raise StateUnwritable(f"cannot write {path}: {exc.strerror or exc}", path=path) from None
    except HostError as exc:  # the door's own "cannot write" (a link stays UnsafePath)
        if type(exc) is not HostError:
            raise
        raise StateUnwritable(str(exc), path=path) from None


def provisioned_vm_id(root: TargetRoot) -> Optional[str]:
    """The VM ID this root was provisioned for, or None."""
    marker = _read_json(root, MARKER)
    vm_id = marker.get("vm_id") if marker else None
    return vm_id if isinstance(vm_id, str) else None


def provisioned_record(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, MARKER)


def intend_to_create_user(root: TargetRoot, vm_id: str, user: str) -> None:
    """Record, durably, that azprov is about to create `user` for this VM. Written only
    for a user that does not exist yet, before useradd runs: if the user exists at a
    re-run, azprov made it. The marker (user_created) confirms it after Ready."""
    _write_json(root, CREATED_USER, {"vm_id": vm_id, "admin_user": user, "state": "creating"})


def remember_created_user(root: TargetRoot, vm_id: str, user: str, created: bool) -> bool:
    """True when azprov created `user` for this VM: in this run, or in an interrupted
    earlier one (even one killed right after useradd: its intent was on disk first)."""
    if created:
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
    pool: Optional[dict[str, Any]] = None,
) -> None:
    """Record that `vm_id` is provisioned (call only after Ready was acknowledged);
    `pool`: how it waited in a pre-provisioned pool first."""
    _write_json(
        root,
        MARKER,
        {
            "vm_id": vm_id,
            "provisioned_at": when,
            "admin_user": admin_user,
            "user_created": user_created,
            "sudoers_file": sudoers_file,
            **({"pool": pool} if pool else {}),
        },
    )
    root.remove(CREATED_USER, links=Links.REFUSE)


def pool_record(root: TargetRoot, vm_id: Optional[str] = None) -> Optional[dict[str, Any]]:
    """The pool marker (for `vm_id` only, when given), or None."""
    record = _read_json(root, POOL_MARKER)
    if record is None or (vm_id is not None and record.get("vm_id") != vm_id):
        return None
    return record


def refuse_unwritable_pool_record(root: TargetRoot) -> None:
    """Before a pool VM's Ready: the record written once it is acknowledged must be
    absent or regular, or the platform would hear Ready and then NotReady for it."""
    _refuse_unwritable_files(root, (POOL_MARKER,))


def save_pool_record(root: TargetRoot, record: dict[str, Any]) -> None:
    _write_json(root, POOL_MARKER, record)


def remove_pool_record(root: TargetRoot) -> None:
    root.remove(POOL_MARKER, links=Links.REFUSE)


def last_run(root: TargetRoot) -> Optional[dict[str, Any]]:
    return _read_json(root, LAST_RUN)


def save_run(root: TargetRoot, record: dict[str, Any]) -> None:
    """Keep a summary of this run for `azprov status` (best effort: never fails a run)."""
    try:
        _write_json(root, LAST_RUN, record)
    except (OSError, HostError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) else str(exc)
        log.warning("could not save %s: %s", LAST_RUN, detail)


def stale_temp_files(root: TargetRoot, directories: tuple[str, ...] = WRITTEN_DIRS) -> list[str]:
    """The temporary files of atomic writes left in `directories` by a run that was
    killed mid-write (in-tree paths). Only stale while no other writer is at work
    there: provision asks under its lock, deprovision on an image nothing runs in."""
    found = []
    for directory in directories:
        try:
            names = root.listdir(directory, links=Links.REFUSE)
        except HostError as exc:
            log.debug("not looking for leftovers in %s: %s", directory, exc)
            continue
        found += [f"{directory}/{name}" for name in names if is_temp_name(name)]
    return found


def remove_stale_temp_files(root: TargetRoot) -> None:
    """Remove what `stale_temp_files` finds (provision, under its lock)."""
    for path in stale_temp_files(root):
        try:
            root.remove(path, links=Links.REFUSE)
            log.info("removed %s, left by an earlier run that was stopped mid-write", path)
        except HostError as exc:
            log.warning("could not remove %s: %s", path, exc)
