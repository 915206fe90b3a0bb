"""useradd, usermod, userdel and systemctl run against an offline root only once every
path they will open there has been checked (azprov/host/toolpaths.py): these tools
follow links as the host sees them, and hang on a FIFO or /dev/zero.

Each test plants one hostile thing in a small image and runs the real tool through
azprov: the run is refused with one line naming the path, before the tool starts,
and nothing outside the image changes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Callable

import pytest

from azprov.credentials import Secret
from azprov.deprovision import apply, plan
from azprov.errors import FileTooLarge, HostError, UnsafePath
from azprov.host.root import TargetRoot
from azprov.host.users import ensure_user, lock_password, set_password
from azprov.simulate import prepare_root, snapshot
from tests.conftest import needs_root

pytestmark = needs_root

# A tool stuck on a FIFO would otherwise hold the test for root.run's 120 s.
TOOL_TIME_LIMIT = 5.0
NAME = "azureuser"


@pytest.fixture(autouse=True)
def _tools_time_out_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    run = TargetRoot.run

    def soon(self: TargetRoot, argv: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = min(kwargs.get("timeout", TOOL_TIME_LIMIT), TOOL_TIME_LIMIT)
        return run(self, argv, **kwargs)

    monkeypatch.setattr(TargetRoot, "run", soon)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    prepare_root(root, "00000000-0000-0000-0000-000000000000")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory of the host beside the image, holding a file of its own."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret").write_text("the host's own file\n")
    return host


def replace_with_link(path: Path, target: Path | str) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def refused(action: Callable[[], object], error: type = UnsafePath, match: str = "") -> str:
    with pytest.raises(error, match=match) as caught:
        action()
    message = str(caught.value)
    assert "\n" not in message
    return message


def untouched(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert (host / "secret").read_text() == "the host's own file\n"


# -- useradd ---------------------------------------------------------------------------


def test_useradd_is_refused_when_home_leads_out_of_an_offline_root(image, outside) -> None:
    replace_with_link(image / "home", outside)
    message = refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="/home")
    assert message.startswith("not running useradd on the image: ")
    untouched(outside)
    assert NAME not in (image / "etc/passwd").read_text()


def test_useradd_is_refused_when_the_default_home_base_leads_out(image, outside) -> None:
    (image / "etc/default").mkdir()
    (image / "etc/default/useradd").write_text("SHELL=/bin/sh\nHOME=/srv/home\n")
    (image / "srv").mkdir()
    (image / "srv/home").symlink_to(outside)
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="/srv/home")
    untouched(outside)


def test_useradd_is_refused_when_the_default_home_base_climbs_out(image, tmp_path) -> None:
    (image / "etc/default").mkdir()
    (image / "etc/default/useradd").write_text("HOME=/../../../../../../../tmp\n")
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="climbs")


@pytest.mark.parametrize("kind", ["FIFO", "link to /dev/zero", "sparse 4 GiB"])
def test_useradd_is_refused_when_login_defs_would_never_end(image, kind) -> None:
    defs = image / "etc/login.defs"
    defs.unlink()
    if kind == "FIFO":
        os.mkfifo(defs)
    elif kind == "link to /dev/zero":
        defs.symlink_to("/dev/zero")
    else:
        defs.write_text("UID_MIN 1000\n")
        os.truncate(defs, 4 << 30)
    error = FileTooLarge if kind.startswith("sparse") else UnsafePath
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), error, match="/etc/login.defs")


def test_useradd_is_refused_when_the_shadow_is_a_sparse_4_gib_file(image) -> None:
    os.truncate(image / "etc/shadow", 4 << 30)
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), FileTooLarge, "/etc/shadow")


@pytest.mark.parametrize("companion", ["shadow-", "passwd+", "group.lock", "gshadow.4242"])
def test_useradd_is_refused_when_a_database_companion_leads_out(image, outside, companion) -> None:
    """The backup (NAME-), the new copy (NAME+), the lock and the PID file are opened
    for writing by name: through a link, useradd would overwrite a file of the host."""
    (image / "etc" / companion).symlink_to(outside / "secret")
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match=f"/etc/{companion}")
    untouched(outside)


def test_useradd_is_refused_when_a_stale_lock_is_a_fifo(image) -> None:
    os.mkfifo(image / "etc/passwd.lock")  # useradd reads an existing lock's PID
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="/etc/passwd.lock")


def test_useradd_is_refused_when_the_mail_spool_leads_out(image, outside) -> None:
    (image / "etc/default").mkdir()
    (image / "etc/default/useradd").write_text("CREATE_MAIL_SPOOL=yes\n")
    with (image / "etc/login.defs").open("a") as defs:
        defs.write("MAIL_DIR /var/mail\n")
    (image / "var/mail").symlink_to(outside)
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="/var/mail")
    untouched(outside)


def test_useradd_never_copies_the_hosts_skeleton(image) -> None:
    """An image without /etc/skel gets an empty home, not the host's /etc/skel."""
    shutil.rmtree(image / "etc/skel")
    ensure_user(TargetRoot(image), NAME, "")
    assert list((image / "home" / NAME).iterdir()) == []


def test_useradd_is_refused_when_the_skeleton_holds_a_sparse_4_gib_file(image) -> None:
    with (image / "etc/skel/.big").open("wb") as big:
        big.truncate(4 << 30)
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), FileTooLarge, "/etc/skel")
    assert not (image / "home" / NAME).exists()


def test_useradd_is_refused_when_the_skeleton_holds_a_device(image) -> None:
    os.mknod(image / "etc/skel/disk", 0o600 | stat.S_IFBLK, os.makedev(8, 0))
    refused(lambda: ensure_user(TargetRoot(image), NAME, ""), match="/etc/skel/disk")


def test_useradd_in_an_offline_root_leaves_the_hosts_lastlog_alone(image, monkeypatch) -> None:
    """Without --no-log-init, useradd --prefix resets the *host's* lastlog and faillog
    entries for the UID it picked from the image."""
    seen: list[list[str]] = []
    run = TargetRoot.run

    def record(self: TargetRoot, argv: Any, **kwargs: Any) -> Any:
        seen.append(list(argv))
        return run(self, argv, **kwargs)

    monkeypatch.setattr(TargetRoot, "run", record)
    ensure_user(TargetRoot(image), NAME, "")
    useradd = next(argv for argv in seen if argv[0] == "useradd")
    assert "--no-log-init" in useradd


def test_useradd_makes_the_user_in_a_plain_image(image) -> None:
    """The checks refuse nothing in an ordinary image: the user, its home and skeleton."""
    with (image / "etc/login.defs").open("a") as defs:
        defs.write("MAIL_DIR /var/mail\n")
    (image / "var/mail").mkdir()
    account, created = ensure_user(TargetRoot(image), NAME, "sudo")
    assert created and account.home == f"/home/{NAME}"
    assert (image / "home" / NAME / ".profile").is_file()


# -- usermod ---------------------------------------------------------------------------


def test_usermod_is_refused_when_login_defs_is_a_fifo(image) -> None:
    ensure_user(TargetRoot(image), NAME, "")
    set_password(TargetRoot(image), NAME, Secret("Passw0rd-for-tests"))  # usable: usermod runs
    (image / "etc/login.defs").unlink()
    os.mkfifo(image / "etc/login.defs")
    refused(lambda: lock_password(TargetRoot(image), NAME), match="/etc/login.defs")


def test_usermod_is_refused_when_the_shadow_backup_leads_out(image, outside) -> None:
    ensure_user(TargetRoot(image), NAME, "")
    set_password(TargetRoot(image), NAME, Secret("Passw0rd-for-tests"))
    replace_with_link(image / "etc/shadow-", outside / "secret")
    refused(lambda: lock_password(TargetRoot(image), NAME), match="/etc/shadow-")
    untouched(outside)


# -- userdel (deprovision --user) ------------------------------------------------------


def provisioned_user(image: Path, home: str = f"/home/{NAME}") -> None:
    """The user as provision leaves it, with the marker deprovision --user trusts."""
    ensure_user(TargetRoot(image), NAME, "")
    passwd = image / "etc/passwd"
    passwd.write_text(passwd.read_text().replace(f":/home/{NAME}:", f":{home}:"))
    state = image / "var/lib/azprov"
    state.mkdir(parents=True, exist_ok=True)
    record = {"vm_id": "x", "admin_user": NAME, "user_created": True, "sudoers_file": None}
    (state / "provisioned.json").write_text(json.dumps(record))


def test_userdel_is_refused_when_home_leads_out_of_an_offline_root(image, outside) -> None:
    provisioned_user(image)
    shutil.rmtree(image / "home")
    (outside / NAME).mkdir()
    (image / "home").symlink_to(outside)
    before = snapshot(image)
    refused(lambda: apply(plan(TargetRoot(image), delete_user=True)), match="/home")
    assert (outside / NAME).is_dir()
    assert snapshot(image) == before  # refused while planning: nothing changed


def test_userdel_is_refused_when_the_home_in_passwd_climbs_out(image, tmp_path) -> None:
    """userdel removes ROOT/<home>: a home of /../../victim would be the host's."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me\n")
    climb = "/.." * len(image.parts) + str(victim)
    provisioned_user(image, home=climb)
    os.chown(victim, 1000, 1000)  # owned by the user's UID, as userdel wants
    refused(lambda: apply(plan(TargetRoot(image), delete_user=True)), match="climbs")
    assert (victim / "precious").read_text() == "keep me\n"


def test_userdel_is_refused_when_the_mailbox_leads_out(image, outside) -> None:
    provisioned_user(image)
    with (image / "etc/login.defs").open("a") as defs:
        defs.write("MAIL_DIR /var/mail\n")
    (image / "var/mail").mkdir()
    (image / "var/mail" / NAME).symlink_to(outside / "secret")
    refused(lambda: apply(plan(TargetRoot(image), delete_user=True)), match="/var/mail")
    untouched(outside)


def test_userdel_is_refused_when_the_shadow_is_a_sparse_4_gib_file(image) -> None:
    provisioned_user(image)
    os.truncate(image / "etc/shadow", 4 << 30)
    refused(lambda: apply(plan(TargetRoot(image), delete_user=True)), HostError, "/etc/shadow")


# -- systemctl --root enable (deprovision) ---------------------------------------------


def test_systemctl_enable_is_refused_when_a_wants_folder_leads_out(image, outside) -> None:
    wants = image / "etc/systemd/system/multi-user.target.wants"
    replace_with_link(wants, outside)
    refused(lambda: apply(plan(TargetRoot(image), delete_user=False)), match=".wants")
    untouched(outside)


def test_systemctl_enable_is_refused_when_etc_systemd_system_leads_out(image, outside) -> None:
    """The unit is the vendor's (/usr/lib/systemd/system); the links go in /etc/systemd/system."""
    system = image / "etc/systemd/system"
    (image / "usr/lib/systemd/system").mkdir(parents=True)
    (system / "azure-provisioning.service").rename(
        image / "usr/lib/systemd/system/azure-provisioning.service"
    )
    shutil.copytree(system, outside / "system", symlinks=True)
    replace_with_link(system, outside / "system")
    before = sorted(str(p) for p in (outside / "system").rglob("*"))
    refused(lambda: apply(plan(TargetRoot(image), delete_user=False)), match="/etc/systemd/system")
    assert sorted(str(p) for p in (outside / "system").rglob("*")) == before


def test_systemctl_enable_is_refused_when_a_unit_file_it_reads_first_is_a_fifo(image) -> None:
    """systemctl reads /etc/systemd/system/UNIT before the vendor's copy, without
    O_NONBLOCK: a FIFO there would hang it."""
    unit = image / "etc/systemd/system/azure-provisioning.service"
    (image / "usr/lib/systemd/system").mkdir(parents=True)
    unit.rename(image / "usr/lib/systemd/system/azure-provisioning.service")
    os.mkfifo(unit)
    refused(lambda: apply(plan(TargetRoot(image), delete_user=False)), match="is a FIFO")


def test_systemctl_enable_works_in_a_merged_usr_image(image) -> None:
    """lib -> usr/lib, the unit in /usr/lib/systemd/system: nothing to refuse."""
    (image / "etc/systemd/system/azure-provisioning.service").rename(image / "unit")
    (image / "usr/lib/systemd/system").mkdir(parents=True)
    (image / "unit").rename(image / "usr/lib/systemd/system/azure-provisioning.service")
    (image / "lib").symlink_to("usr/lib")
    link = image / "etc/systemd/system/multi-user.target.wants/azure-provisioning.service"
    link.unlink()
    apply(plan(TargetRoot(image), delete_user=False))
    assert link.is_symlink()
