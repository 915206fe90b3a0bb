"""The admin user azprov created: found from its marker, deleted only when that is certain."""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import re
import stat
from typing import Optional

from azprov.confined import Links
from azprov.deprovision.actions import Action, DeprovisionRefused, exists, removals
from azprov.errors import HostError, UnsafePath
from azprov.host import state
from azprov.host.files import remove_tree_at
from azprov.host.root import TargetRoot
from azprov.host.toolpaths import check_userdel
from azprov.host.users import read_accounts

log = logging.getLogger(__name__)

SUDOERS_DIR = "/etc/sudoers.d/"
# What shadow's useradd accepts, without a leading '-' that userdel would take as an option.
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*\$?\Z")


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
    """Deleting the user; refuses now, before anything changes, an image in which userdel
    would be led out of it or hang (toolpaths)."""
    actions = []
    if user.home is not None:
        check_userdel(root, user.name, user.home)
        actions.append(
            Action(
                f"delete user {user.name}, its group and its home {user.home}",
                lambda: delete_account(root, user.name, user.home),
            )
        )
    if user.sudoers_file and exists(root, user.sudoers_file):
        actions += removals(root, "sudoers drop-in", [user.sudoers_file])
    return actions


def delete_account(root: TargetRoot, name: str, home: Optional[str]) -> None:
    """Delete `name`, whose home passwd gives as `home`: live, `userdel --remove`; in an
    offline root azprov removes the home and the mailbox itself, through the door (no
    link followed), and userdel only edits the databases: joined to --prefix, a home
    from the image's passwd is a path the host resolves."""
    checked_home, spool = check_userdel(root, name, home)
    if not root.live:
        account = read_accounts(root).users.get(name)
        if account is not None:
            if checked_home is not None:
                _remove_home(root, name, checked_home, account.uid)
            if spool is not None:
                _remove_mailbox(root, f"{spool}/{name}", account.uid)
    # Live, the admin user is usually the one running `sudo azprov deprovision
    # --user` (Packer does exactly that): --force deletes it while logged in.
    options = ["--remove", "--force"] if root.live else []
    result = root.run(
        ["userdel", *root.prefix_args(), *options, name],
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


def _remove_home(root: TargetRoot, name: str, home: str, uid: int) -> None:
    """Remove the home directory `home` (a plain in-tree path) of `name`, as userdel
    --remove would: only a directory the user owns, never the top of the tree."""
    parent, leaf = posixpath.split(home)
    if not leaf:
        raise UnsafePath(f"the home of {name} in /etc/passwd is {home!r}, the whole tree")
    found = root.lstat(home, links=Links.REFUSE)
    if found is None:
        log.info("the home %s of %s is already gone", home, name)
        return
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != uid:
        # userdel's own rule: what the user does not own is not theirs to lose.
        log.warning("not removing %s: not a directory owned by %s (UID %d)", home, name, uid)
        return
    try:
        with root.directory(parent, create=False, links=Links.REFUSE) as parent_fd:
            remove_tree_at(parent_fd, leaf)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise HostError(
            f"cannot remove the home {home} of {name}: {exc.strerror or exc}", path=home
        ) from None


def _remove_mailbox(root: TargetRoot, mailbox: str, uid: int) -> None:
    """The user's mailbox in the spool, when it is a file the user owns (userdel's rule)."""
    found = root.lstat(mailbox, links=Links.REFUSE)
    if found is not None and stat.S_ISREG(found.st_mode) and found.st_uid == uid:
        root.remove(mailbox, links=Links.REFUSE)
