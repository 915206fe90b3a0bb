"""sshd's password policy as provision sets it: whatever form an earlier line takes,
and wherever sshd reads it, azprov's value is the one sshd uses.

Each case says what sshd reads before azprov's line, and what the files must hold
afterwards; where a real sshd is installed (openssh-server), `sshd -T` also
confirms the effective value, and that the case's image is one sshd accepts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import pytest

from azprov.host.root import TargetRoot
from azprov.host.sshd import set_password_authentication
from tests.host.real_sshd import RealSshd, available, needs_sshd, sshd_binary

INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf\n"
OURS_NO = "# Set by azprov: the VM's password login policy.\nPasswordAuthentication no\n"


@pytest.fixture(scope="module")
def real_sshd(tmp_path_factory: pytest.TempPathFactory) -> Optional[RealSshd]:
    return RealSshd(tmp_path_factory.mktemp("sshd")) if available() else None


def image(root: Path, files: dict[str, str]) -> TargetRoot:
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / "etc/ssh" / name).write_text(text)
    return TargetRoot(root)


def files_of(root: Path) -> dict[str, str]:
    ssh = root / "etc/ssh"
    return {str(p.relative_to(ssh)): p.read_text() for p in sorted(ssh.rglob("*")) if p.is_file()}


# (case, the image's files, the files after `PasswordAuthentication no` is set)
EARLIER_LINES = [
    (
        "equals_sign_above_the_include",
        {"sshd_config": f"PasswordAuthentication=yes\n{INCLUDE}UsePAM yes\n"},
        {"sshd_config": f"{INCLUDE}UsePAM yes\n", "sshd_config.d/00-azprov.conf": OURS_NO},
    ),
    (
        "spaced_equals_sign_and_other_case",
        {"sshd_config": f"passwordauthentication = yes\n{INCLUDE}"},
        {"sshd_config": INCLUDE, "sshd_config.d/00-azprov.conf": OURS_NO},
    ),
    (
        "quoted_keyword_and_value",
        {"sshd_config": f'"PasswordAuthentication" "yes"\n{INCLUDE}'},
        {"sshd_config": INCLUDE, "sshd_config.d/00-azprov.conf": OURS_NO},
    ),
    (
        "trailing_comment_and_crlf",
        {"sshd_config": f"  PasswordAuthentication\tYES # legacy\r\n{INCLUDE}"},
        {"sshd_config": INCLUDE, "sshd_config.d/00-azprov.conf": OURS_NO},
    ),
    (
        "drop_in_sorted_before_azprov",
        {
            "sshd_config": INCLUDE,
            "sshd_config.d/00-aaa.conf": "Port 22\nPasswordAuthentication=yes\n",
        },
        {
            "sshd_config": INCLUDE,
            "sshd_config.d/00-aaa.conf": "Port 22\n",
            "sshd_config.d/00-azprov.conf": OURS_NO,
        },
    ),
    (
        "relative_include_with_another_pattern",
        {
            "sshd_config": "Include sshd_config.d/*\nPasswordAuthentication yes\n",
            "sshd_config.d/0-kbd": "PasswordAuthentication yes\n",
        },
        {
            "sshd_config": "Include sshd_config.d/*\nPasswordAuthentication yes\n",
            "sshd_config.d/0-kbd": "",
            "sshd_config.d/00-azprov.conf": OURS_NO,
        },
    ),
    (
        "global_again_after_match_all",
        {
            "sshd_config": "Match User backup\n  PasswordAuthentication yes\n"
            f"Match all\nPasswordAuthentication yes\n{INCLUDE}"
        },
        {
            "sshd_config": f"Match User backup\n  PasswordAuthentication yes\nMatch all\n{INCLUDE}",
            "sshd_config.d/00-azprov.conf": OURS_NO,
        },
    ),
    (
        "match_all_after_the_include_overrides_the_global_line",
        {"sshd_config": f"{INCLUDE}Match all\nPasswordAuthentication yes\n"},
        {"sshd_config": f"{INCLUDE}Match all\n", "sshd_config.d/00-azprov.conf": OURS_NO},
    ),
    (
        "match_all_in_a_drop_in_read_after_azprov",
        {
            "sshd_config": INCLUDE,
            "sshd_config.d/99-late.conf": "Match all\n  PasswordAuthentication yes\n",
        },
        {
            "sshd_config": INCLUDE,
            "sshd_config.d/00-azprov.conf": OURS_NO,
            "sshd_config.d/99-late.conf": "Match all\n",
        },
    ),
    (
        "include_only_under_a_match",
        {"sshd_config": f"PasswordAuthentication yes\nMatch User backup\n  {INCLUDE}"},
        {"sshd_config": f"{OURS_NO}Match User backup\n  {INCLUDE}"},
    ),
    (
        "no_include_and_equals_sign",
        {
            "sshd_config": "PasswordAuthentication=yes\nUsePAM yes\nMatch User x\n  X11Forwarding no\n"
        },
        {"sshd_config": f"{OURS_NO}UsePAM yes\nMatch User x\n  X11Forwarding no\n"},
    ),
]


@pytest.mark.parametrize(
    ("image_files", "expected"),
    [pytest.param(before, after, id=name) for name, before, after in EARLIER_LINES],
)
def test_password_authentication_set_by_azprov_wins_over_every_earlier_form(
    tmp_path: Path,
    image_files: dict[str, str],
    expected: dict[str, str],
    real_sshd: Optional[RealSshd],
) -> None:
    """Finding 16: `PasswordAuthentication=yes` above the Include (or in a drop-in
    read first) survived azprov's `no`, so password login stayed on."""
    if real_sshd is not None:  # the image as given is one sshd accepts, with password login on
        before = real_sshd.settings(image(tmp_path / "before", image_files).path)
        assert before is not None and before["passwordauthentication"] == ["yes"]
    root = image(tmp_path / "root", image_files)
    assert set_password_authentication(root, allow=False)
    assert files_of(root.path) == expected
    if real_sshd is not None:
        after = real_sshd.settings(root.path)
        assert after is not None and after["passwordauthentication"] == ["no"]
    set_password_authentication(root, allow=False)
    assert files_of(root.path) == expected  # a second run changes nothing


def test_allowing_password_login_after_refusing_it_replaces_azprov_own_line(
    tmp_path: Path,
) -> None:
    root = image(tmp_path, {"sshd_config": "UsePAM yes\n"})
    set_password_authentication(root, allow=False)
    set_password_authentication(root, allow=True)
    assert files_of(tmp_path) == {"sshd_config": OURS_NO.replace(" no", " yes") + "UsePAM yes\n"}


def test_lines_inside_match_blocks_are_left_alone(tmp_path: Path) -> None:
    text = f"{INCLUDE}Match Address 10.0.0.0/8\n  PasswordAuthentication yes\n"
    root = image(tmp_path, {"sshd_config": text})
    set_password_authentication(root, allow=False)
    assert files_of(tmp_path) == {"sshd_config": text, "sshd_config.d/00-azprov.conf": OURS_NO}


_CONNECTION_SCRIPT = """
set -e
mount --bind "$1" /etc/ssh
if [ -n "$2" ]; then mount --bind "$2" /etc/passwd; fi
mount -t tmpfs tmpfs /run
mkdir /run/sshd
exec "$3" -T -f /etc/ssh/sshd_config -h "$4" -C user=azureuser,host=client,addr=203.0.113.5
"""


def password_login_for_a_connection(real_sshd: RealSshd, root: Path) -> str:
    """What `sshd -T -C user=azureuser,…` says of PasswordAuthentication: the value
    after the Match blocks that connection matches."""
    binary = sshd_binary()
    assert binary is not None
    mounts = [str(root / "etc/ssh"), real_sshd.passwd, binary, str(real_sshd.key)]
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", _CONNECTION_SCRIPT, "sh", *mounts],
        capture_output=True,
        cwd="/",
        timeout=30,
        check=True,
    )
    lines = result.stdout.decode().splitlines()
    return next(line.split()[1] for line in lines if line.startswith("passwordauthentication "))


@pytest.mark.parametrize(
    "late",
    ["Match all\n  PasswordAuthentication yes\n", "Match User *\n  PasswordAuthentication yes\n"],
)
def test_a_match_for_every_connection_cannot_turn_password_login_back_on(
    tmp_path: Path, real_sshd: Optional[RealSshd], late: str
) -> None:
    """Review H4: `Match all` then `PasswordAuthentication yes`, read after azprov's
    line, overrides it for every connection: sshd applies Match blocks after the
    global values."""
    files = {"sshd_config": f"{INCLUDE}UsePAM yes\n{late}"}
    if real_sshd is not None:
        before = image(tmp_path / "before", files).path
        assert password_login_for_a_connection(real_sshd, before) == "yes"
    root = image(tmp_path / "root", files)
    assert set_password_authentication(root, allow=False)
    header = late.splitlines()[0]
    assert files_of(root.path) == {
        "sshd_config": f"{INCLUDE}UsePAM yes\n{header}\n",
        "sshd_config.d/00-azprov.conf": OURS_NO,
    }
    if real_sshd is not None:
        assert password_login_for_a_connection(real_sshd, root.path) == "no"
        after = real_sshd.settings(root.path)
        assert after is not None and after["passwordauthentication"] == ["no"]


def test_an_image_without_sshd_config_gets_no_policy(tmp_path: Path) -> None:
    assert set_password_authentication(TargetRoot(tmp_path), allow=False) is False
    assert list(tmp_path.iterdir()) == []


def test_a_linked_sshd_config_is_edited_where_it_leads_inside_the_image(tmp_path: Path) -> None:
    """Some images keep sshd_config elsewhere and link it: sshd reads the target."""
    (tmp_path / "usr/share/ssh").mkdir(parents=True)
    (tmp_path / "usr/share/ssh/sshd_config").write_text("PasswordAuthentication yes\n")
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/sshd_config").symlink_to("/usr/share/ssh/sshd_config")
    set_password_authentication(TargetRoot(tmp_path), allow=False)
    assert (tmp_path / "etc/ssh/sshd_config").is_symlink()
    assert (tmp_path / "usr/share/ssh/sshd_config").read_text() == OURS_NO


@needs_sshd
def test_the_real_sshd_reads_the_forms_as_the_table_says(
    tmp_path: Path, real_sshd: Optional[RealSshd]
) -> None:
    """The table above is what sshd itself does: every `before` image has password
    login on (checked per case), and a stray form sshd refuses is not in it."""
    assert real_sshd is not None
    refused = image(tmp_path, {"sshd_config": 'PasswordAuthentication "yes\n'})
    assert real_sshd.settings(refused.path) is None
