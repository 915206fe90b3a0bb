"""Config files, sshd_config and status records in shapes editors and crashes leave behind."""

from __future__ import annotations

import json

from azprov.host.root import TargetRoot
from azprov.host.sshd import set_password_authentication
from tests.conftest import run_azprov


def test_config_with_a_byte_order_mark(tmp_path):
    from azprov.config import load_config

    path = tmp_path / "bom.conf"
    path.write_bytes("\ufeff[imds]\ntotal_timeout = 7\n".encode())
    assert load_config(tmp_path, path).imds.total_timeout == 7


def test_global_password_setting_above_the_include_is_removed(tmp_path):
    config = tmp_path / "etc/ssh/sshd_config"
    config.parent.mkdir(parents=True)
    (tmp_path / "etc/ssh/sshd_config.d").mkdir()
    config.write_text(
        "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n"
        "PasswordAuthentication yes\nMatch User x\n  PasswordAuthentication yes\n"
    )
    root = TargetRoot(tmp_path)
    assert set_password_authentication(root, allow=False)
    assert config.read_text() == (
        "Include /etc/ssh/sshd_config.d/*.conf\n"
        "PasswordAuthentication yes\nMatch User x\n  PasswordAuthentication yes\n"
    )
    assert (
        (tmp_path / "etc/ssh/sshd_config.d/00-azprov.conf")
        .read_text()
        .endswith("PasswordAuthentication no\n")
    )
    before = config.read_text()
    set_password_authentication(root, allow=False)
    assert config.read_text() == before  # idempotent


def test_status_with_a_marker_missing_its_time(tmp_path):
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "sys/firmware/efi").mkdir(parents=True)
    vm_id = "d0c2b7e9-8d5c-4f1e-9a43-5b6f0e4a3c21"
    (tmp_path / "sys/class/dmi/id/product_uuid").write_text(vm_id)
    (tmp_path / "var/lib/azprov").mkdir(parents=True)
    (tmp_path / "var/lib/azprov/provisioned.json").write_text(json.dumps({"vm_id": vm_id}))
    run = run_azprov("--root", str(tmp_path), "status")
    assert run.returncode == 0 and "yes, at an unrecorded time" in run.stdout
