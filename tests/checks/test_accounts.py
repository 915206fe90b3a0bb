"""Accounts and homes: passwords, keys, history, credentials, sudo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.checks.trees import assert_case, case_table, fired, good_tree, problems, write

CASES, case = case_table()


def password_hash(password: str = "Build-Passw0rd") -> str:
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def public_key(tmp: Path) -> str:
    key = tmp / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "packer@ci", "-f", str(key)],
        check=True,
    )
    return (tmp / "id_ed25519.pub").read_text()


def build_user(root: Path, name: str = "packer", uid: int = 1000) -> None:
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/bash\n")
    with (root / "etc/shadow").open("a") as shadow:
        shadow.write(f"{name}:!:19000:0:99999:7:::\n")
    (root / f"home/{name}").mkdir(parents=True)


@case("passwords-locked")
def root_password(root: Path) -> None:
    write(root, "etc/shadow", f"root:{password_hash()}:19000:0:99999:7:::\n", 0o640)


@case("passwords-locked")
def empty_password_in_backup(root: Path) -> None:
    write(root, "etc/shadow-", "root::19000:0:99999:7:::\n", 0o640)


@case("authorized-keys")
def build_users_key(root: Path) -> None:
    build_user(root)
    write(root, "home/packer/.ssh/authorized_keys", public_key(root.parent), 0o600)


@case("authorized-keys")
def private_key_in_root(root: Path) -> None:
    (root / "root/.ssh").mkdir()
    key = root / "root/.ssh/id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)


@case("leftover-users-sudoers", "warn")
def leftover_user(root: Path) -> None:
    build_user(root)


@case("leftover-users-sudoers", "warn")
def sudo_rule_for_a_deleted_user(root: Path) -> None:
    write(root, "etc/sudoers.d/packer", "packer ALL=(ALL) NOPASSWD: ALL\n", 0o440)


@case("shell-history")
def root_history(root: Path) -> None:
    write(root, "root/.bash_history", "az login --service-principal -p s3cret\n", 0o600)


@case("shell-history")
def nested_history(root: Path) -> None:
    build_user(root)
    write(root, "home/packer/work/.zsh_history", ": 1700000000:0;vault login\n")


@case("shell-history", "warn")
def python_history(root: Path) -> None:
    write(root, "root/.python_history", "import os\n")


@case("cloud-cli-credentials")
def azure_cli_token_cache(root: Path) -> None:
    write(root, "root/.azure/msal_token_cache.json", '{"AccessToken": {}}\n', 0o600)


@case("cloud-cli-credentials")
def git_credentials(root: Path) -> None:
    build_user(root)
    write(root, "home/packer/.git-credentials", "https://ci:token@example.com\n", 0o600)


@case("sudo-policy")
def targetpw(root: Path) -> None:
    write(root, "etc/sudoers.d/hardening", "Defaults targetpw\n", 0o440)


@case("sudo-policy")
def no_includedir(root: Path) -> None:
    write(root, "etc/sudoers", "root ALL=(ALL:ALL) ALL\n", 0o440)


@pytest.mark.parametrize(
    ("check_id", "severity", "breaker"), CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_fires(tmp_path: Path, check_id: str, severity: str, breaker) -> None:
    assert_case(tmp_path, check_id, severity, breaker)


def test_cloud_init_root_stub_and_nologin_users_pass(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    stub = (
        'no-port-forwarding,command="echo \'Please login as the user \\"debian\\" rather than'
        ' the user \\"root\\".\';echo;sleep 10;exit 142" ' + public_key(tmp_path)
    )
    write(root, "root/.ssh/authorized_keys", stub, 0o600)
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write("svc:x:998:998::/var/lib/svc:/usr/sbin/nologin\n")
    write(root, "var/lib/svc/.ssh/authorized_keys", public_key(tmp_path / "root"))
    assert problems(root, "authorized-keys") == []


def test_authorized_keys_file_from_the_effective_sshd_config(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/ssh/sshd_config.d/50-keys.conf", "AuthorizedKeysFile /etc/ssh/keys/%u\n")
    write(root, "etc/ssh/keys/root", public_key(tmp_path))
    assert fired(root, "authorized-keys").path == "etc/ssh/keys/root"


def test_disabled_targetpw_and_ignored_dropins_pass(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/sudoers.d/ok", "Defaults !targetpw\n", 0o440)
    write(root, "etc/sudoers.d/old.bak", "Defaults targetpw\n", 0o440)  # sudo skips names with '.'
    assert problems(root, "sudo-policy") == []


def test_locked_hashes_pass(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/shadow", f"root:!{password_hash()}:19000::::::\nbin:*:19000::::::\n", 0o640)
    assert problems(root, "passwords-locked") == []
