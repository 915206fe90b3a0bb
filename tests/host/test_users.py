"""The account files (passwd, group, shadow) of the target root: read and rewritten only
as the image's own regular files, never through a link, never past their cap."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from azprov.credentials import Secret
from azprov.errors import FileTooLarge, UnsafePath
from azprov.host.root import TargetRoot
from azprov.host.users import ACCOUNT_FILE_CAP, read_accounts, set_password

HOST_HASH = "$6$hostsalt$THEHOSTSHADOWHASH"


def image(root: Path) -> TargetRoot:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nazureuser:x:1000:1000::/home/azureuser:/bin/bash\n"
    )
    (root / "etc/group").write_text("root:x:0:\nazureuser:x:1000:\n")
    (root / "etc/shadow").write_text("root:*:20000:0:99999:7:::\nazureuser:!:20000::::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    os.chown(root / "etc/shadow", 0, 42)
    return TargetRoot(root)


def test_a_shadow_linked_out_of_the_root_is_refused_not_copied(tmp_path: Path) -> None:
    """The image's etc/shadow linked to a host file, plus an ovf-env password: the host
    file's hashes must not be copied into the image (nor the host file changed)."""
    host_shadow = tmp_path / "host-shadow"
    host_shadow.write_text(f"root:{HOST_HASH}:19000::::::\nazureuser:!:19000::::::\n")
    root = image(tmp_path / "root")
    (tmp_path / "root/etc/shadow").unlink()
    (tmp_path / "root/etc/shadow").symlink_to(host_shadow)
    before = host_shadow.read_bytes()
    with pytest.raises(UnsafePath, match="/etc/shadow"):
        set_password(root, "azureuser", Secret("Passw0rd-for-tests"))
    assert host_shadow.read_bytes() == before
    assert (tmp_path / "root/etc/shadow").is_symlink()  # left as it was, not filled
    for directory, _, files in os.walk(tmp_path / "root"):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                assert b"THEHOSTSHADOW" not in path.read_bytes(), path


def test_passwd_and_group_linked_out_of_the_root_are_refused(tmp_path: Path) -> None:
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_text("hostonly:x:4242:4242::/home/hostonly:/bin/bash\n")
    root = image(tmp_path / "root")
    (tmp_path / "root/etc/passwd").unlink()
    (tmp_path / "root/etc/passwd").symlink_to(host_passwd)
    with pytest.raises(UnsafePath, match="/etc/passwd"):
        read_accounts(root)
    (tmp_path / "root/etc/passwd").unlink()
    (tmp_path / "root/etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "root/etc/group").unlink()
    (tmp_path / "root/etc/group").symlink_to("/etc/passwd")  # inside the tree, still refused
    with pytest.raises(UnsafePath, match="/etc/group"):
        read_accounts(root)


def test_an_account_file_over_its_cap_is_refused_whole(tmp_path: Path) -> None:
    root = image(tmp_path)
    with (tmp_path / "etc/passwd").open("r+b") as passwd:
        passwd.truncate(ACCOUNT_FILE_CAP + 1)  # sparse: no disk used
    with pytest.raises(FileTooLarge, match="/etc/passwd"):
        read_accounts(root)


def test_the_shadow_is_rewritten_with_its_mode_and_owner(tmp_path: Path) -> None:
    root = image(tmp_path)
    set_password(root, "azureuser", Secret("Passw0rd-for-tests"))
    shadow = tmp_path / "etc/shadow"
    info = shadow.lstat()
    assert stat.S_ISREG(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o640, 0, 42)
    lines = shadow.read_text().splitlines()
    assert lines[0] == "root:*:20000:0:99999:7:::"
    assert lines[1].startswith("azureuser:$6$") and lines[1].endswith(":20000::::::")


@pytest.mark.parametrize("uid", ["1" * 5000, "\u00b2", "1\u0663"])
def test_a_passwd_line_whose_uid_is_no_plain_number_is_skipped(tmp_path: Path, uid: str) -> None:
    """int() refuses 5000 digits (Python 3.11) and '²', which str.isdigit() accepts."""
    root = image(tmp_path)
    with (tmp_path / "etc/passwd").open("a", encoding="utf-8") as passwd:
        passwd.write(f"odd:x:{uid}:{uid}::/home/odd:/bin/sh\n")
    accounts = read_accounts(root)
    assert "odd" not in accounts.users and "azureuser" in accounts.users
