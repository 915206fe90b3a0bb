"""authorized_keys: merged whole (never cut), refused whole past a cap chosen above
anything azprov itself can write, and written only through the user's own .ssh."""

from __future__ import annotations

import base64
import os
import struct
from pathlib import Path

import pytest

from azprov.credentials import AuthorizedKey
from azprov.errors import FileTooLarge
from azprov.fabric.http import DEFAULT_MAX_BYTES
from azprov.host.media import MAX_OVF_BYTES
from azprov.host.root import TargetRoot
from azprov.host.ssh import AUTHORIZED_KEYS_CAP, install_keys
from azprov.host.users import Account

ACCOUNT = Account("azureuser", 1000, 1000, "/home/azureuser", "/bin/bash")
KEYS = "home/azureuser/.ssh/authorized_keys"


def key_line(index: int) -> str:
    blob = (
        struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + index.to_bytes(32, "big")
    )
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} user{index}@example"


def home(root: Path) -> TargetRoot:
    (root / "home/azureuser/.ssh").mkdir(parents=True)
    os.chown(root / "home/azureuser", 1000, 1000)
    return TargetRoot(root)


def test_an_existing_file_over_a_mebibyte_is_kept_whole(tmp_path: Path) -> None:
    """12,000 keys (1.1 MB) a user already had: every one stays, none cut in half."""
    root = home(tmp_path)
    existing = [key_line(i) for i in range(12_000)]
    (tmp_path / KEYS).write_text("\n".join(existing) + "\n")
    assert (tmp_path / KEYS).stat().st_size > 1 << 20
    install_keys(root, ACCOUNT, [AuthorizedKey(key_line(99_999), None)])
    lines = (tmp_path / KEYS).read_text().splitlines()
    assert lines == [*existing, key_line(99_999)]


def test_a_file_azprov_wrote_from_10000_imds_keys_is_merged_again_whole(tmp_path: Path) -> None:
    """A redeploy reads back the 1.5 MB azprov wrote itself from 10,000 IMDS keys."""
    root = home(tmp_path)
    keys = [AuthorizedKey(key_line(i) + " " + "c" * 60, None) for i in range(10_000)]
    install_keys(root, ACCOUNT, keys)
    assert (tmp_path / KEYS).stat().st_size > 1_400_000
    install_keys(root, ACCOUNT, keys)  # the same keys again: nothing added, nothing lost
    assert (tmp_path / KEYS).read_text().splitlines() == [k.line for k in keys]


def test_a_file_over_the_cap_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    root = home(tmp_path)
    path = tmp_path / KEYS
    path.write_text(key_line(1) + "\n")
    os.truncate(path, AUTHORIZED_KEYS_CAP + 1)  # sparse: no disk used
    with pytest.raises(FileTooLarge) as caught:
        install_keys(root, ACCOUNT, [AuthorizedKey(key_line(2), None)])
    message = str(caught.value)
    assert "/home/azureuser/.ssh/authorized_keys" in message
    assert str(AUTHORIZED_KEYS_CAP + 1) in message
    assert path.stat().st_size == AUTHORIZED_KEYS_CAP + 1


def test_the_cap_is_above_what_one_provisioning_can_add(tmp_path: Path) -> None:
    """Keys come from IMDS (a reply of at most DEFAULT_MAX_BYTES) or else ovf-env.xml
    (at most MAX_OVF_BYTES); each key line is shorter than its JSON or XML form."""
    assert 2 * max(DEFAULT_MAX_BYTES, MAX_OVF_BYTES) <= AUTHORIZED_KEYS_CAP


def test_a_link_planted_as_authorized_keys_is_replaced_not_followed(tmp_path: Path) -> None:
    root = home(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text("root:$6$secret:1::::::\n")
    (tmp_path / KEYS).symlink_to("/etc/shadow")
    install_keys(root, ACCOUNT, [AuthorizedKey(key_line(3), None)])
    assert not (tmp_path / KEYS).is_symlink()
    assert (tmp_path / KEYS).read_text() == key_line(3) + "\n"  # nothing of the shadow
    assert (tmp_path / "etc/shadow").read_text() == "root:$6$secret:1::::::\n"
