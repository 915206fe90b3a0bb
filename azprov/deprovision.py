"""Image preparation: the reverse of provision, so a captured image provisions as a new VM.

The whole plan is worked out and listed before anything changes; every check
that can refuse (not a root filesystem, no unit to re-enable, no record of
the user azprov created) runs first, so a refusal changes nothing. Against
`--root DIR` (a mounted image) only that tree is touched: a path whose
directory resolves outside it (an absolute symlink in the image, say) is
left alone with a warning.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

import click

from azprov.config import Config
from azprov.errors import AzprovError
from azprov.fabric.endpoints import LEASE_GLOBS
from azprov.host import state
from azprov.host.files import write_atomic
from azprov.host.kvp import POOL, count_own_records, remove_own_records
from azprov.host.root import HostError, TargetRoot
from azprov.host.units import PROVISIONING_UNIT
from azprov.host.users import read_accounts

log = logging.getLogger(__name__)

HOSTNAME = "localhost"
HISTORY_FILES = (".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history")
HOST_KEY_GLOB = "etc/ssh/ssh_host_*"
DBUS_MACHINE_ID = "/var/lib/dbus/machine-id"
SUDOERS_DIR = "/etc/sudoers.d/"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
# What shadow's useradd accepts, without a leading '-' that userdel would take as an option.
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?$")


class DeprovisionRefused(AzprovError):
    """Deprovisioning cannot go ahead safely; nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Action:
    """One change, described as the listing shows it."""

    description: str
    apply: Callable[[], None]


def deprovision(
    root: TargetRoot, config: Config, *, delete_user: bool, force: bool, dry_run: bool
) -> None:
    """List what will change, ask (unless `force`), then change it (unless `dry_run`)."""
    del config  # nothing configurable yet; the signature matches the other commands
    actions = plan(root, delete_user=delete_user)
    where = "this machine" if root.live else str(root.path)
    click.echo(f"azprov deprovision will change {where}:")
    for action in actions:
        click.echo(f"  - {action.description}")
    if dry_run:
        click.echo("dry run: nothing was changed")
        return
    if not force:
        confirm(where)
    for action in actions:
        action.apply()
        log.info("done: %s", action.description)
    click.echo(f"deprovisioned {where}: {len(actions)} changes; capture the image now")
    if root.live:
        click.echo("(shell history written after this point, by this session, is not removed)")


def confirm(where: str) -> None:
    """Ask on the terminal; with no terminal refuse, so a script must say --force."""
    if not sys.stdin.isatty():
        raise DeprovisionRefused(
            "refusing to deprovision without confirmation: stdin is not a terminal"
            " (pass --force to run unattended, or --dry-run to only list)"
        )
    if not click.confirm(f"Deprovision {where}?", default=False):
        raise DeprovisionRefused("deprovision cancelled: nothing was changed")


def plan(root: TargetRoot, *, delete_user: bool) -> list[Action]:
    """Every change, in order. Raises DeprovisionRefused before anything changes."""
    if not (root / "/etc").is_dir():
        raise DeprovisionRefused(f"{root.path} does not look like a root filesystem: no /etc")
    unit_file = find_unit(root)
    record = state.provisioned_record(root) or {}
    user = provisioned_user(root, record) if delete_user else None

    actions: list[Action] = []
    if user is not None:
        actions += user_actions(root, user)
    actions += state_actions(root)
    actions += removals(root, "SSH host key", sorted(root.path.glob(HOST_KEY_GLOB)))
    leases = [Path(p) for pattern in LEASE_GLOBS for p in glob.glob(str(root.path / pattern))]
    actions += removals(root, "DHCP lease", sorted(set(leases)))
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
    dbus = root / DBUS_MACHINE_ID
    if dbus.is_file() and not dbus.is_symlink():
        actions += removals(root, "D-Bus machine ID", [dbus])
    if count_own_records(root):  # the host would show the build VM's report on every clone
        actions.append(
            Action(f"remove azprov's KVP records from {POOL}", lambda: remove_own_records(root))
        )
    actions.append(
        Action(
            f"enable {PROVISIONING_UNIT} ({unit_file})",
            lambda: enable_unit(root),
        )
    )
    return actions


# -- the admin user -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProvisionedUser:
    name: str
    home: Optional[str]  # None: the account is already gone
    sudoers_file: Optional[str]


def provisioned_user(root: TargetRoot, record: dict[str, object]) -> ProvisionedUser:
    """The user azprov created, from its marker; refuse when that cannot be told for sure."""
    marker = state.MARKER
    if not record:
        raise DeprovisionRefused(
            f"cannot tell which user azprov created: {marker} is missing or unreadable"
            " (delete the user yourself, or run without --user)"
        )
    name = record.get("admin_user")
    if not isinstance(name, str) or not name:
        raise DeprovisionRefused(
            f"cannot tell which user azprov created: {marker} has no admin_user"
            " (delete the user yourself, or run without --user)"
        )
    if not _USER_NAME.match(name):
        raise DeprovisionRefused(f"{marker}: admin_user={name!r} is not a valid user name")
    if record.get("user_created") is not True:
        raise DeprovisionRefused(
            f"user {name!r} was not created by azprov ({marker}: user_created is not true);"
            " refusing to delete it"
        )
    sudoers = record.get("sudoers_file")
    if sudoers is not None and not (
        isinstance(sudoers, str)
        and sudoers.startswith(SUDOERS_DIR)
        and "/" not in sudoers[len(SUDOERS_DIR) :]
        and sudoers[len(SUDOERS_DIR) :] not in ("", ".", "..")
    ):
        raise DeprovisionRefused(
            f"{marker}: sudoers_file={sudoers!r} is not a file in {SUDOERS_DIR}"
        )
    accounts = read_accounts(root)
    account = accounts.users.get(name)
    if account is not None and (account.uid == 0 or account.uid < accounts.uid_min):
        raise DeprovisionRefused(
            f"user {name!r} has UID {account.uid}, a system account; refusing to delete it"
        )
    return ProvisionedUser(name, account.home if account else None, sudoers)


def user_actions(root: TargetRoot, user: ProvisionedUser) -> list[Action]:
    actions = []
    if user.home is not None:
        actions.append(
            Action(
                f"delete user {user.name}, its group and its home {user.home} (userdel --remove)",
                lambda: delete_account(root, user.name),
            )
        )
    if user.sudoers_file and (root / user.sudoers_file).exists():
        actions += removals(root, "sudoers drop-in", [root / user.sudoers_file])
    return actions


def delete_account(root: TargetRoot, name: str) -> None:
    # Live, the admin user is usually the one running `sudo azprov deprovision
    # --user` (Packer does exactly that): --force deletes it while logged in.
    force = ["--force"] if root.live else []
    result = root.run(
        ["userdel", *root.prefix_args(), "--remove", *force, name],
        what=f"delete user {name}",
        check=False,
    )
    # 12: the home directory could not be removed; userdel says which and why.
    if result.returncode not in (0, 12):
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise HostError(
            f"delete user {name}: userdel exited with status {result.returncode}: "
            + (detail[-1] if detail else "no message"),
            tool="userdel",
        )
    if result.returncode == 12:
        log.warning("userdel could not remove the home of %s", name)


# -- files ----------------------------------------------------------------------------


def state_actions(root: TargetRoot) -> list[Action]:
    directory = root / state.STATE_DIR
    if not (directory.exists() or directory.is_symlink()):
        return []
    return [
        Action(
            f"remove {state.STATE_DIR} (provisioned marker, run record, saved custom data)",
            lambda: remove(root, directory),
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
            files += [root / f"{home}/{history}" for history in HISTORY_FILES]
    return removals(root, "shell history", [f for f in files if f.exists() or f.is_symlink()])


def removals(root: TargetRoot, what: str, paths: list[Path]) -> list[Action]:
    actions = []
    for path in paths:
        if not inside(root, path):
            log.warning("leaving %s alone: it resolves outside %s", path, root.path)
            continue
        actions.append(Action(f"remove {what} {root.outside_view(path)}", _remover(root, path)))
    return actions


def _remover(root: TargetRoot, path: Path) -> Callable[[], None]:
    return lambda: remove(root, path)


def inside(root: TargetRoot, path: Path) -> bool:
    """True when `path`'s directory really is within the root (symlinks resolved)."""
    if root.live:
        return True
    real = os.path.realpath(path.parent)
    base = str(root.path)
    return real == base or real.startswith(base.rstrip("/") + "/")


def remove(root: TargetRoot, path: Path) -> None:
    """Delete a file, a link (never its target) or a directory tree; gone already is fine."""
    shown = root.outside_view(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HostError(f"cannot remove {shown}: {exc.strerror}", path=shown) from None


def write_file(root: TargetRoot, path: str, data: bytes, mode: int) -> None:
    target = root / path
    if not inside(root, target):
        raise HostError(f"{path} resolves outside {root.path}; not writing it", path=path)
    try:
        write_atomic(target, data, mode=mode, owner=(0, 0))
    except OSError as exc:
        raise HostError(f"cannot write {path}: {exc.strerror}", path=path) from None


# -- the first-boot unit ------------------------------------------------------------------


def find_unit(root: TargetRoot) -> str:
    """Where the first-boot unit is installed; refuse when it is not (or cannot be enabled)."""
    for directory in UNIT_DIRS:
        if (root / f"{directory}/{PROVISIONING_UNIT}").is_file():
            found = f"{directory}/{PROVISIONING_UNIT}"
            break
    else:
        raise DeprovisionRefused(
            f"{PROVISIONING_UNIT} is not installed in {root.path}"
            " (looked in " + ", ".join(UNIT_DIRS) + "): the image would not provision"
        )
    if not root.has_tool("systemctl"):
        raise DeprovisionRefused(f"systemctl is not installed: cannot enable {PROVISIONING_UNIT}")
    return found


def enable_unit(root: TargetRoot) -> None:
    root.systemctl("enable", PROVISIONING_UNIT)
