"""`provision` refusing what would trick it or fail halfway: each refused cleanly, reported,
with the image unchanged (found by reviews and fault campaigns)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from azprov.simulate import prepare_root, snapshot
from azprov.simulator import PublicKey, SimulatedFabric
from azprov.simulator.documents import EXAMPLE_SSH_KEY
from tests.conftest import needs_root, run_azprov, start_azprov


def provision(config: Path, root: Path) -> object:
    return run_azprov("--config", str(config), "--root", str(root), "provision")


@pytest.fixture
def image(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    return root


@needs_root
def test_provision_never_writes_through_a_link_out_of_the_image(
    fabric, config_file, image, tmp_path
):
    outside = tmp_path / "host-sudoers.d"
    outside.mkdir()
    (image / "etc/sudoers.d").rmdir()
    (image / "etc/sudoers.d").symlink_to(outside)
    run = provision(config_file, image)
    assert run.returncode != 0 and "/etc/sudoers.d is a symbolic link" in run.stderr
    assert list(outside.iterdir()) == []
    assert fabric.health_reports[-1].state == "NotReady"


@needs_root
def test_existing_user_with_home_slash_cannot_be_given_etc_ssh(fabric, config_file, image):
    with (image / "etc/passwd").open("a") as passwd:
        passwd.write("ops:x:1001:1001::/:/bin/bash\n")
    fabric.spec.admin_username = "ops"
    fabric.spec.public_keys = [PublicKey(EXAMPLE_SSH_KEY, "/etc/ssh/authorized_keys")]
    before = (image / "etc/ssh").stat()
    run = provision(config_file, image)
    assert run.returncode != 0 and "unusable home '/'" in run.stderr
    after = (image / "etc/ssh").stat()
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


@needs_root
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda spec: setattr(spec, "admin_username", "sudo"), "already the name of a group"),
        (lambda spec: setattr(spec, "computer_name", "vm1\n"), "is not an RFC 1123 host name"),
    ],
)
def test_names_that_would_fail_halfway_are_refused_up_front(
    fabric, config_file, image, change, message
):
    change(fabric.spec)
    before = {
        p: v
        for p, v in snapshot(image).items()
        if not p.startswith(("/var/lib/azprov", "/var/lib/hyperv"))
    }
    run = provision(config_file, image)
    assert run.returncode != 0 and message in run.stderr
    after = {
        p: v
        for p, v in snapshot(image).items()
        if not p.startswith(("/var/lib/azprov", "/var/lib/hyperv"))
    }
    assert after == before


@needs_root
def test_missing_extra_group_is_refused_before_any_change(fabric, config_file, image):
    with config_file.open("a") as handle:
        handle.write("[provisioning]\nuser_groups = adm, wheel\n")
    run = provision(config_file, image)
    assert run.returncode != 0 and "no such group: wheel" in run.stderr
    assert (image / "etc/hostname").read_text() == "localhost\n"


@needs_root
def test_kvp_pool_that_cannot_be_written_does_not_hide_the_report(fabric, config_file, image):
    (image / "var/lib/hyperv/.kvp_pool_1").mkdir()
    fabric.spec.computer_name = "bad_name!"
    run = provision(config_file, image)
    assert run.returncode == 1 and "could not write KVP" in run.stderr
    assert fabric.health_reports[-1].state == "NotReady"


@needs_root
def test_unreadable_vm_id_is_reported_not_ready(fabric, config_file, image):
    (image / "sys/class/dmi/id/product_uuid").write_text("garbage\n")
    run = provision(config_file, image)
    assert run.returncode == 1 and "is not a UUID" in run.stderr
    report = fabric.health_reports[-1]
    assert report.state == "NotReady" and "vm_id=unknown" in report.description


@needs_root
def test_sigterm_is_reported_as_a_failure(fabric, config_file, image):
    fabric.imds.delay = 30  # hold the run in the gather phase
    process = start_azprov("--config", str(config_file), "--root", str(image), "provision")
    deadline = time.monotonic() + 30
    while not fabric.requests_to("wireserver") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and "stopped by SIGTERM" in stderr
    assert fabric.health_reports[-1].state == "NotReady"
    assert "reason=terminated" in fabric.health_reports[-1].description


@needs_root
def test_broken_config_in_the_image_leaves_a_kvp_record(fabric, config_file, image):
    (image / "etc/azprov").mkdir(parents=True)
    (image / "etc/azprov/azprov.conf").write_text("[wireserver]\nendpont = 10.0.0.1\n")
    run = provision(config_file, image)
    assert run.returncode == 2 and "unknown key 'endpont'" in run.stderr
    record = (image / "var/lib/hyperv/.kvp_pool_1").read_bytes()
    assert b"result=error|reason=config_invalid" in record
    assert fabric.requests == []  # no guessing where the WireServer is


@needs_root
def test_two_runs_at_once_provision_once(fabric, config_file, image):
    """The unit and a manual run started together: one provisions, the other waits and
    finds the VM done (the lock spans Ready and the marker)."""
    fabric.wireserver.delay = 0.3  # widen the window between Ready and the marker
    args = ("--config", str(config_file), "--root", str(image), "provision")
    first, second = start_azprov(*args), start_azprov(*args)
    outputs = [p.communicate(timeout=120)[1] for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outputs
    assert [r.state for r in fabric.health_reports] == ["Ready"]
    assert sum("already provisioned" in out for out in outputs) == 1


def _outside_the_state(root: Path) -> dict[str, object]:
    return {
        p: v
        for p, v in snapshot(root).items()
        if not p.startswith(("/var/lib/azprov", "/var/lib/hyperv"))
    }


@needs_root
def test_an_image_whose_home_leads_out_is_refused_before_any_change(
    fabric, config_file, image, tmp_path
):
    """useradd --prefix follows a /home link as the host sees it: it would make the
    home (and copy the skeleton) in a directory of the host."""
    outside = tmp_path / "host-home"
    outside.mkdir()
    (image / "home").rmdir()
    (image / "home").symlink_to(outside)
    before = _outside_the_state(image)
    run = provision(config_file, image)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("azprov: error: not running useradd")
    assert "/home is a symbolic link" in run.stderr
    assert list(outside.iterdir()) == []
    assert _outside_the_state(image) == before  # not even the host name
    report = fabric.health_reports[-1]
    assert report.state == "NotReady" and "reason=unsafe_path" in report.description


@needs_root
def test_a_marker_that_is_a_directory_is_reported_not_ready_before_any_change(
    fabric, config_file, image
):
    """azprov's marker is written after Ready: a directory in its place is refused up
    front (state_unwritable), not found after Ready as an internal error."""
    (image / "var/lib/azprov/provisioned.json").mkdir(parents=True)
    before = _outside_the_state(image)
    run = provision(config_file, image)
    assert run.returncode == 1, run.stderr
    assert "provisioned.json is a directory" in run.stderr.strip().splitlines()[-1]
    assert [r.state for r in fabric.health_reports] == ["NotReady"]
    assert "reason=state_unwritable" in fabric.health_reports[-1].description
    assert _outside_the_state(image) == before
