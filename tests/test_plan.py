"""Validation and merging rules: every value that reaches the machine is checked first."""

from __future__ import annotations

import base64
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from azprov.credentials import Secret, key_path_inside_home
from azprov.errors import InvalidInput
from azprov.fabric.imds import ImdsPublicKey, InstanceMetadata, parse_instance_metadata
from azprov.fabric.ovf import parse_ovf_env
from azprov.host.identity import read_vm_id
from azprov.host.media import read_media
from azprov.host.root import TargetRoot
from azprov.host.users import Account, Accounts
from azprov.plan import (
    decide,
    validate_hostname,
    validate_password,
    validate_ssh_key,
    validate_username,
)
from azprov.simulator.documents import EXAMPLE_SSH_KEY, ovf_env_xml

ACCOUNTS = Accounts(
    {
        "daemon": Account("daemon", 1, 1, "/usr/sbin", "/bin/false"),
        "alice": Account("alice", 1001, 1001, "/home/alice", "/bin/bash"),
    },
    1000,
)
VM_ID = "d0c2b7e9-8d5c-4f1e-9a43-5b6f0e4a3c21"


def metadata(**fields: object) -> InstanceMetadata:
    base: dict[str, object] = dict(
        vm_id=VM_ID,
        name="vm",
        computer_name="vm1",
        admin_username="azureuser",
        disable_password_authentication=True,
        public_keys=(ImdsPublicKey(EXAMPLE_SSH_KEY, "/home/azureuser/.ssh/authorized_keys"),),
        user_data=None,
    )
    base.update(fields)
    return InstanceMetadata(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["vm1", "a", "web-01", "a" * 63, "host.example.internal", "A1"])
def test_valid_hostnames(name):
    assert validate_hostname(name, "f") == name


@pytest.mark.parametrize(
    "name",
    [
        "-lead",
        "trail-",
        "under_score",
        "a" * 64,
        "sp ace",
        "a..b",
        "x" * 30 + "." + "y" * 34,
        "ünï",
    ],
)
def test_invalid_hostnames(name):
    with pytest.raises(InvalidInput) as caught:
        validate_hostname(name, "imds.osProfile.computerName")
    assert "imds.osProfile.computerName" in str(caught.value)


@pytest.mark.parametrize(
    "name", ["root", "daemon", "../x", "a/b", "Admin", "9lives", "-x", "a" * 33, "", "x y"]
)
def test_invalid_usernames(name):
    with pytest.raises(InvalidInput):
        validate_username(name, "f", ACCOUNTS)


def test_existing_normal_user_is_accepted():
    assert validate_username("alice", "f", ACCOUNTS) == "alice"


def test_ssh_key_rules():
    assert validate_ssh_key("  " + EXAMPLE_SSH_KEY + "\r\n", "k") == EXAMPLE_SSH_KEY
    body = EXAMPLE_SSH_KEY.split()[1]
    for bad, why in [
        (EXAMPLE_SSH_KEY.replace(" azureuser", "\nazureuser"), "line break"),
        ("ssh-dss " + body, "unknown key type"),
        ("ssh-rsa " + body, "does not name the type"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-ed25519", "TYPE BASE64"),
        ('command="sh" ' + EXAMPLE_SSH_KEY, "unknown key type"),
        (EXAMPLE_SSH_KEY + "\x07", "control characters"),
    ]:
        with pytest.raises(InvalidInput, match=why):
            validate_ssh_key(bad, "k")


def test_ssh_key_generated_by_ssh_keygen_validates(tmp_path):
    for kind in ("rsa", "ecdsa", "ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(tmp_path / kind)], check=True
        )
        line = (tmp_path / f"{kind}.pub").read_text()
        assert validate_ssh_key(line, "k") == line.strip()


def test_truncated_key_blob_is_refused():
    blob = struct.pack(">I", 40) + b"ssh-ed25519"
    with pytest.raises(InvalidInput, match="does not name"):
        validate_ssh_key("ssh-ed25519 " + base64.b64encode(blob).decode(), "k")


def test_password_limit_and_redaction():
    assert validate_password(Secret("x" * 72), "p").reveal() == "x" * 72
    with pytest.raises(InvalidInput) as caught:
        validate_password(Secret("s3cret" * 13), "ovf-env.UserPassword")
    assert "s3cret" not in str(caught.value) and "<redacted>" in str(caught.value)
    assert "s3cret" not in repr(Secret("s3cret"))


def test_imds_wins_and_ovf_fills_the_rest():
    ovf = parse_ovf_env(
        ovf_env_xml(
            hostname="ovfname",
            username="ovfuser",
            password="pw-123",
            custom_data=b"data",
            disable_ssh_password_auth=False,
        )
    )
    plan = decide(metadata(), ovf, ACCOUNTS, VM_ID)
    assert (plan.hostname, plan.username, plan.disable_password_auth) == ("vm1", "azureuser", True)
    assert plan.password == Secret("pw-123") and plan.custom_data == b"data"
    fallback = decide(
        metadata(
            computer_name=None,
            admin_username=None,
            public_keys=(),
            disable_password_authentication=None,
        ),
        ovf,
        ACCOUNTS,
        VM_ID,
    )
    assert (fallback.hostname, fallback.username, fallback.disable_password_auth) == (
        "ovfname",
        "ovfuser",
        False,
    )


def test_no_way_to_log_in_is_refused():
    with pytest.raises(InvalidInput, match="nobody could log in"):
        decide(metadata(public_keys=()), None, ACCOUNTS, VM_ID)


def test_missing_names_are_refused():
    with pytest.raises(InvalidInput, match="computerName"):
        decide(metadata(computer_name=None), None, ACCOUNTS, VM_ID)


def test_imds_disable_password_authentication_string_or_bool():
    doc = b'{"compute": {"osProfile": {"disablePasswordAuthentication": "%s"}}}'
    assert parse_instance_metadata(doc % b"true").disable_password_authentication is True
    assert parse_instance_metadata(doc % b"False").disable_password_authentication is False
    assert (
        parse_instance_metadata(
            b'{"compute": {"osProfile": {"disablePasswordAuthentication": false}}}'
        ).disable_password_authentication
        is False
    )
    with pytest.raises(InvalidInput, match="disablePasswordAuthentication"):
        parse_instance_metadata(doc % b"yes")


def test_imds_wrong_types_name_the_field():
    with pytest.raises(InvalidInput, match=r"compute\.publicKeys\[0\]\.keyData"):
        parse_instance_metadata(b'{"compute": {"publicKeys": [{"keyData": 5}]}}')


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, "/home/u/.ssh/authorized_keys"),
        ("/home/u/.ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
        ("/home/u/keys/ak", "/home/u/.ssh/authorized_keys"),
        ("/home/u/.ssh/authorized_keys2", "/home/u/.ssh/authorized_keys2"),
        ("/home/u/.profile", "/home/u/.ssh/authorized_keys"),
        ("/home/u/.ssh/../.ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
        ("/home/u/../v/.ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
        ("/etc/shadow", "/home/u/.ssh/authorized_keys"),
        ("relative/path", "/home/u/.ssh/authorized_keys"),
        ("/home/user2/.ssh/authorized_keys", "/home/u/.ssh/authorized_keys"),
    ],
)
def test_key_path_must_stay_in_the_home(requested, expected):
    assert key_path_inside_home(requested, "/home/u", "f") == expected


def test_vm_id_generation_1_byte_swap_and_generation_2(tmp_path):
    raw = "AABBCCDD-EEFF-0011-2233-445566778899"
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "sys/class/dmi/id/product_uuid").write_text(raw + "\n")
    root = TargetRoot(tmp_path)
    assert read_vm_id(root) == str(uuid.UUID(bytes=uuid.UUID(raw).bytes_le))
    assert read_vm_id(root) == "ddccbbaa-ffee-1100-2233-445566778899"
    (tmp_path / "sys/firmware/efi").mkdir(parents=True)
    assert read_vm_id(root) == raw.lower()


def test_vm_id_missing_or_garbage_is_a_clear_error(tmp_path):
    root = TargetRoot(tmp_path)
    with pytest.raises(Exception, match="cannot read the VM ID"):
        read_vm_id(root)
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "sys/class/dmi/id/product_uuid").write_text("not-a-uuid")
    with pytest.raises(Exception, match="is not a UUID"):
        read_vm_id(root)


def test_ovf_env_parsing_and_bad_custom_data():
    ovf = parse_ovf_env(
        ovf_env_xml(public_keys=(("/home/x/.ssh/authorized_keys", EXAMPLE_SSH_KEY),))
    )
    assert ovf.public_keys[0].value == EXAMPLE_SSH_KEY and ovf.password is None
    broken = ovf_env_xml(custom_data=b"x").replace(b"<ns1:CustomData>eA==", b"<ns1:CustomData>***")
    with pytest.raises(InvalidInput, match="CustomData"):
        parse_ovf_env(broken)
    with pytest.raises(InvalidInput, match="LinuxProvisioningConfigurationSet"):
        parse_ovf_env(b'<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"/>')


def test_media_path_without_ovf_env_is_an_error(tmp_path):
    with pytest.raises(InvalidInput, match=r"media\.path"):
        read_media(TargetRoot(tmp_path), str(tmp_path))


def test_offline_root_without_media_path_has_no_media(tmp_path):
    assert read_media(TargetRoot(tmp_path), None) is None


def test_unmountable_device_is_skipped_with_a_warning(tmp_path, caplog):
    """A real loop device with no file system: mount fails as udf and iso9660, nothing is read."""
    from azprov.host.media import _read_from_device

    image = tmp_path / "blank.img"
    image.write_bytes(b"\0" * (1 << 20))
    attach = subprocess.run(
        ["losetup", "-f", "--show", "-r", str(image)], capture_output=True, text=True
    )
    if attach.returncode != 0:
        pytest.skip(f"no loop devices here: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        assert _read_from_device(TargetRoot("/"), device) is None
        assert "could not mount" in caplog.text
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def test_live_root_without_a_cd_means_imds_only(monkeypatch):
    import azprov.host.media as media

    monkeypatch.setattr(media, "CD_DEVICES", (str(Path("/nonexistent/sr0")),))
    assert read_media(TargetRoot("/"), None) is None


def test_trailing_newline_is_not_a_valid_name():
    with pytest.raises(InvalidInput):
        validate_hostname("vm1\n", "f")
    with pytest.raises(InvalidInput):
        validate_username("bob\n", "f", ACCOUNTS)


def test_imds_strings_with_control_characters_are_refused():
    with pytest.raises(InvalidInput, match="control characters"):
        parse_instance_metadata(b'{"compute": {"osProfile": {"computerName": "vm\\u0007"}}}')
    with pytest.raises(InvalidInput, match="control characters"):
        parse_instance_metadata(
            b'{"compute": {"publicKeys": [{"keyData": "ssh-ed25519 AAAA", "path": "/h/\\ud800"}]}}'
        )


def test_accounts_that_must_not_be_taken_over():
    accounts = Accounts(
        {
            "nfsnobody": Account("nfsnobody", 65534, 65534, "/var/lib/nfs", "/sbin/nologin"),
            "ops": Account("ops", 1001, 1001, "/", "/bin/bash"),
            "rel": Account("rel", 1002, 1002, "home/rel", "/bin/bash"),
        },
        1000,
        60000,
        frozenset({"sudo", "users"}),
    )
    for name, why in [
        ("nfsnobody", "system account"),
        ("ops", "unusable home"),
        ("rel", "unusable home"),
        ("sudo", "name of a group"),
    ]:
        with pytest.raises(InvalidInput, match=why):
            validate_username(name, "f", accounts)


def test_extra_groups_must_exist():
    from azprov.plan import validate_groups

    accounts = Accounts({}, 1000, 60000, frozenset({"adm", "sudo"}))
    assert validate_groups(" adm, sudo ", accounts) == "adm,sudo"
    with pytest.raises(InvalidInput, match="no such group: wheel"):
        validate_groups("adm,wheel", accounts)


def test_multibyte_password_that_openssl_would_cut_is_refused():
    with pytest.raises(InvalidInput, match="<redacted>"):
        validate_password(Secret("\U0001d11e" * 72), "p")
    assert validate_password(Secret("é" * 72), "p")
