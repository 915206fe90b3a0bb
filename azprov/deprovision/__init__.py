"""Image preparation: the reverse of provision, so a captured image provisions as a new VM.

The whole plan is worked out and listed before anything changes; every check
that can refuse (not a root filesystem, no unit to re-enable, no record of
the user azprov created) runs first, so a refusal changes nothing. Against
`--root DIR` (a mounted image) only that tree is touched: every path goes
through the root's door, and a link in the image (an absolute one too) leads
where it will lead when the image boots, never out of it.
"""

from __future__ import annotations

import logging
import stat
from typing import Optional

from azprov.deprovision.actions import (
    Action,
    DeprovisionRefused,
    exists,
    removals,
    remove,
    write_file,
)
from azprov.deprovision.user import provisioned_user, user_actions
from azprov.host import state
from azprov.host.kvp import POOL, count_own_records, remove_own_records
from azprov.host.leases import LEASE_GLOBS
from azprov.host.root import TargetRoot
from azprov.host.toolpaths import check_systemctl
from azprov.host.units import PROVISIONING_UNIT
from azprov.host.users import read_accounts

__all__ = ["Action", "DeprovisionRefused", "apply", "plan"]

log = logging.getLogger(__name__)

HOSTNAME = "localhost"
HISTORY_FILES = (".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history")
HOST_KEY_GLOB = "etc/ssh/ssh_host_*"
DBUS_MACHINE_ID = "/var/lib/dbus/machine-id"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def apply(actions: list[Action]) -> None:
    """Make the changes `plan` listed, in order."""
    for action in actions:
        action.apply()
        log.info("done: %s", action.description)


def plan(root: TargetRoot, *, delete_user: bool) -> list[Action]:
    """Every change, in order. Raises DeprovisionRefused before anything changes."""
    etc = root.stat("/etc")
    if etc is None or not stat.S_ISDIR(etc.st_mode):
        raise DeprovisionRefused(f"{root.path} does not look like a root filesystem: no /etc")
    unit_file = find_unit(root)
    record = state.provisioned_record(root) or {}
    user = provisioned_user(root, record) if delete_user else None

    actions: list[Action] = []
    if user is not None:
        actions += user_actions(root, user)
    actions += state_actions(root)
    actions += removals(root, "SSH host key", root.glob(HOST_KEY_GLOB))
    leases = {path for pattern in LEASE_GLOBS for path in root.glob(pattern)}
    actions += removals(root, "DHCP lease", sorted(leases))
    # Temporary files of a write that a kill cut short (nothing else runs in an
    # image being prepared, so every one of them is stale).
    actions += removals(root, "leftover temporary file", state.stale_temp_files(root))
    actions += history_actions(root, record, skip_user=user.name if user else None)
    actions.append(
        Action(
            f"set the host name to {HOSTNAME} in /etc/hostname",
            lambda: write_file(root, "/etc/hostname", f"{HOSTNAME}\n".encode(), 0o644),
        )
    )
    actions.append(
        Action(
            "empty /etc/machine-id (a new one is made on first boot)",
            lambda: write_file(root, "/etc/machine-id", b"", 0o444),
        )
    )
    # systemd copies D-Bus's machine ID back into an empty /etc/machine-id.
    dbus = root.lstat(DBUS_MACHINE_ID)
    if dbus is not None and stat.S_ISREG(dbus.st_mode):
        actions += removals(root, "D-Bus machine ID", [DBUS_MACHINE_ID])
    if count_own_records(root):  # the host would show the build VM's report on every clone
        actions.append(
            Action(f"remove azprov's KVP records from {POOL}", lambda: remove_own_records(root))
        )
    actions.append(
        Action(
            f"enable {PROVISIONING_UNIT} ({unit_file})",
            lambda: enable_unit(root, unit_file),
        )
    )
    return actions


# -- files ----------------------------------------------------------------------------


def state_actions(root: TargetRoot) -> list[Action]:
    if not exists(root, state.STATE_DIR):
        return []
    return [
        Action(
            f"remove {state.STATE_DIR} (provisioned marker, run record, saved custom data)",
            lambda: remove(root, state.STATE_DIR),
        )
    ]


def history_actions(
    root: TargetRoot, record: dict[str, object], skip_user: Optional[str]
) -> list[Action]:
    """Shell history of root and of the provisioned admin user (unless it is being deleted)."""
    accounts = read_accounts(root).users
    names = ["root"]
    admin = record.get("admin_user")
    if isinstance(admin, str) and admin not in names and admin != skip_user:
        names.append(admin)
    files = []
    for name in names:
        account = accounts.get(name)
        home = account.home if account else ("/root" if name == "root" else None)
        if home:
            files += [f"{home.rstrip('/')}/{history}" for history in HISTORY_FILES]
    return removals(root, "shell history", [f for f in files if exists(root, f)])


# -- the first-boot unit ------------------------------------------------------------------


def find_unit(root: TargetRoot) -> str:
    """Where the first-boot unit is installed; refuse when it is not (or cannot be enabled)."""
    for directory in UNIT_DIRS:
        found = f"{directory}/{PROVISIONING_UNIT}"
        unit = root.stat(found)  # /lib is a link to usr/lib on merged-/usr images
        if unit is not None and stat.S_ISREG(unit.st_mode):
            break
    else:
        raise DeprovisionRefused(
            f"{PROVISIONING_UNIT} is not installed in {root.path}"
            " (looked in " + ", ".join(UNIT_DIRS) + "): the image would not provision"
        )
    if not root.has_tool("systemctl"):
        raise DeprovisionRefused(f"systemctl is not installed: cannot enable {PROVISIONING_UNIT}")
    check_systemctl(root, found)  # an image that would lead systemctl out: refused now
    return found


def enable_unit(root: TargetRoot, unit_file: str) -> None:
    check_systemctl(root, unit_file)
    root.systemctl("enable", PROVISIONING_UNIT)
