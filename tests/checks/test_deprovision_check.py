"""`azprov deprovision` clears D-Bus's machine-id copy and azprov's KVP records, then reports."""

from __future__ import annotations

from pathlib import Path

from azprov.host.kvp import decode_records, encode_record
from tests.checks.trees import good_tree, link, write
from tests.conftest import needs_root, run_azprov

POOL = "var/lib/hyperv/.kvp_pool_1"


@needs_root
def test_deprovision_clears_what_it_owns_and_prints_what_is_left(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    write(root, "var/lib/dbus/machine-id", "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    (root / "var/lib/hyperv").mkdir(parents=True)
    (root / POOL).write_bytes(
        encode_record("PROVISIONING_REPORT", "result=success|agent=azprov")
        + encode_record("VmDiagnostics", "kept")
        + encode_record("PROVISIONING_REPORT", "result=error")
    )
    write(root, "root/.aws/credentials", "[default]\naws_secret_access_key = x\n", 0o600)

    run = run_azprov("--root", str(root), "deprovision", "--force")
    assert run.returncode == 0, run.stderr
    assert "remove D-Bus machine ID /var/lib/dbus/machine-id" in run.stdout
    assert "remove azprov's KVP records from /var/lib/hyperv/.kvp_pool_1" in run.stdout
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert decode_records((root / POOL).read_bytes()) == [("VmDiagnostics", "kept")]
    # What deprovision does not own is reported, not fixed.
    assert "azprov check: still to fix by hand:" in run.stdout
    assert "error cloud-cli-credentials: root/.aws/credentials exists" in run.stdout
    assert (root / "root/.aws/credentials").exists()
    assert "machine-id:" not in run.stdout


@needs_root
def test_dbus_link_is_left_alone_and_dry_run_reports_nothing(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    link(root, "var/lib/dbus/machine-id", "/etc/machine-id")
    run = run_azprov("--root", str(root), "deprovision", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "D-Bus" not in run.stdout and "azprov check" not in run.stdout
    run = run_azprov("--root", str(root), "deprovision", "--force")
    assert (root / "var/lib/dbus/machine-id").is_symlink()
    assert "azprov check: nothing left to fix" in run.stdout
