"""Every path azprov hands to useradd/userdel for an offline root, from the image's own
files (passwd's home, default/useradd's HOME, login.defs' MAIL_DIR), is a plain absolute
in-tree path: no `..` or `.` component, nothing relative, no NUL; otherwise one line
naming the field and the value, before any tool runs. The home userdel would remove is
removed by azprov itself, through the door, and userdel runs without --remove."""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.credentials import Secret
from azprov.deprovision import apply, plan
from azprov.errors import UnsafePath
from azprov.host.root import TargetRoot
from azprov.host.toolpaths import plain_path
from azprov.host.users import ensure_user, set_password
from azprov.simulate import prepare_root
from tests.conftest import needs_root

pytestmark = needs_root
NAME = "azureuser"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "image"
    prepare_root(root, "00000000-0000-0000-0000-000000000000")
    return root


def _refused(action: Any, match: str) -> str:
    with pytest.raises(UnsafePath, match=match) as caught:
        action()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def _created_by_azprov(root: Path, name: str, home: str) -> None:
    """An account the image says azprov made, whose passwd home is `home`."""
    with open(root / "etc/passwd", "a") as passwd:
        passwd.write(f"{name}:x:1001:1001::{home}:/bin/bash\n")
    with open(root / "etc/group", "a") as group:
        group.write(f"{name}:x:1001:\n")
    with open(root / "etc/shadow", "a") as shadow:
        shadow.write(f"{name}:!:20000:0:99999:7:::\n")
    (root / "var/lib/azprov").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/azprov/provisioned.json").write_text(
        f'{{"admin_user": "{name}", "user_created": true, "sudoers_file": null}}'
    )


@pytest.mark.parametrize(
    "home", ["/home/./victim", "home/victim", "/home/victim/.", "/home/x/../victim"]
)
def test_a_passwd_home_that_is_not_a_plain_absolute_path_is_refused_before_userdel(
    image: Path, home: str
) -> None:
    _created_by_azprov(image, "victim", home)
    (image / "home/victim").mkdir(parents=True)
    message = _refused(lambda: plan(TargetRoot(image), delete_user=True), "victim")
    assert repr(home) in message and "/etc/passwd" in message
    assert (image / "home/victim").is_dir()


def test_a_passwd_home_of_the_top_of_the_tree_is_refused_before_the_image_is_emptied(
    image: Path,
) -> None:
    _created_by_azprov(image, "victim", "//")
    _refused(lambda: plan(TargetRoot(image), delete_user=True), "whole tree")
    assert (image / "etc/passwd").is_file()


def test_a_passwd_home_holding_a_nul_is_refused_before_userdel(image: Path) -> None:
    _created_by_azprov(image, "victim", "/home/victim\0/../../../../tmp")
    _refused(lambda: plan(TargetRoot(image), delete_user=True), "NUL")


def test_userdel_runs_without_remove_and_azprov_removes_the_home_through_the_door(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _created_by_azprov(image, "victim", "/home/victim")
    (image / "home/victim/.ssh").mkdir(parents=True)
    (image / "home/victim/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA\n")
    (image / "home/victim/link-out").symlink_to("/etc")
    for path in ("home/victim", "home/victim/.ssh", "home/victim/.ssh/authorized_keys"):
        os.chown(image / path, 1001, 1001)
    argvs: list[list[str]] = []
    run = TargetRoot.run

    def recorded(self: TargetRoot, argv: Any, **kwargs: Any) -> Any:
        argvs.append(list(argv))
        return run(self, argv, **kwargs)

    monkeypatch.setattr(TargetRoot, "run", recorded)
    apply(plan(TargetRoot(image), delete_user=True))
    userdel = [argv for argv in argvs if argv[0] == "userdel"]
    assert userdel and all("--remove" not in argv for argv in userdel)
    assert not (image / "home/victim").exists()
    assert (image / "home").is_dir() and Path("/etc").is_dir()
    assert "victim:" not in (image / "etc/passwd").read_text()


@pytest.mark.parametrize("base", ["/srv/./home", "srv/home", "/srv/home/."])
def test_a_default_home_base_that_is_not_a_plain_absolute_path_is_refused(
    image: Path, base: str
) -> None:
    (image / "etc/default").mkdir(exist_ok=True)
    (image / "etc/default/useradd").write_text(f"HOME={base}\n")
    message = _refused(lambda: ensure_user(TargetRoot(image), NAME, ""), "HOME")
    assert repr(base) in message
    assert NAME not in (image / "etc/passwd").read_text()


@pytest.mark.parametrize("spool", ["var/mail", "/var/./mail", "/var/mail/."])
def test_a_mail_dir_that_is_not_a_plain_absolute_path_is_refused_before_useradd(
    image: Path, spool: str
) -> None:
    (image / "etc/default").mkdir(exist_ok=True)
    (image / "etc/default/useradd").write_text("CREATE_MAIL_SPOOL=yes\n")
    with open(image / "etc/login.defs", "a") as defs:
        defs.write(f"MAIL_DIR {spool}\n")
    _refused(lambda: ensure_user(TargetRoot(image), NAME, ""), "MAIL_DIR")
    assert NAME not in (image / "etc/passwd").read_text()


@pytest.mark.parametrize("loose", [0o644, 0o604])
def test_a_world_readable_shadow_gets_the_password_hash_only_after_it_is_made_private(
    image: Path, loose: int, caplog: pytest.LogCaptureFixture
) -> None:
    with open(image / "etc/shadow", "a") as shadow:
        shadow.write(f"{NAME}:!:20000:0:99999:7:::\n")
    with open(image / "etc/passwd", "a") as passwd:
        passwd.write(f"{NAME}:x:1000:1000::/home/{NAME}:/bin/bash\n")
    os.chmod(image / "etc/shadow", loose)
    with caplog.at_level(logging.WARNING):
        set_password(TargetRoot(image), NAME, Secret("Passw0rd-for-tests"))
    info = (image / "etc/shadow").stat()
    assert stat.S_IMODE(info.st_mode) & 0o007 == 0
    assert stat.S_IMODE(info.st_mode) in (0o640, 0o600)
    assert "$6$" in (image / "etc/shadow").read_text()
    assert any(
        "/etc/shadow" in r.getMessage() and oct(loose)[2:] in r.getMessage()
        for r in caplog.records
    )


@settings(max_examples=200, deadline=1000)
@given(st.text(alphabet="/.a\0", max_size=24))
def test_a_vetted_path_joined_to_the_root_never_leaves_it(path: str) -> None:
    """What plain_path lets through is what the tool will use: absolute, normalised, no
    NUL, and ROOT/path normalises to a path inside ROOT."""
    try:
        vetted = plain_path(path, "HOME in /etc/default/useradd")
    except UnsafePath as refused:
        assert "HOME in /etc/default/useradd" in str(refused) and "\n" not in str(refused)
        return
    assert vetted.startswith("/") and "\0" not in vetted
    components = vetted.split("/")[1:]
    assert not {"", ".", ".."} & set(components) or vetted == "/"
    assert components == [part for part in path.split("/") if part] or vetted == "/"
    assert posixpath.normpath("/tree/root/" + vetted).startswith("/tree/root")
