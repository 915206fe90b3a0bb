"""Attempts to trick azprov that a second review found, each now refused cleanly."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from azprov.errors import FabricError, HostError, InvalidInput
from azprov.fabric.http import Deadline, FabricHttp, RetryPolicy
from azprov.fabric.xmldoc import parse_xml
from azprov.host.leases import wireserver_from_leases
from azprov.host.media import read_media
from azprov.host.root import TargetRoot
from azprov.host.sshd import set_password_authentication
from azprov.simulate import prepare_root, snapshot
from azprov.simulator import Answer, PublicKey, SimulatedFabric
from azprov.simulator.documents import EXAMPLE_SSH_KEY
from tests.conftest import needs_root, run_azprov, start_azprov


def provision(config: Path, root: Path) -> object:
    return run_azprov("--config", str(config), "--root", str(root), "provision")


@pytest.fixture
def image(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    return root


# -- the target root --------------------------------------------------------------------------


def test_a_root_that_is_slash_in_disguise_is_live(tmp_path):
    assert TargetRoot("//").live and TargetRoot("/.").live
    link = tmp_path / "slash"
    link.symlink_to("/")
    assert TargetRoot(link).live


def test_symlink_out_of_an_offline_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/sudoers.d").symlink_to(outside)
    with pytest.raises(HostError, match="leads outside it"):
        TargetRoot(root) / "/etc/sudoers.d/90-azprov-x"
    # the link itself may be named (deprovision removes links, never their targets)
    assert TargetRoot(root) / "/etc/sudoers.d" == root / "etc/sudoers.d"


@needs_root
def test_provision_never_writes_through_a_link_out_of_the_image(
    fabric, config_file, image, tmp_path
):
    outside = tmp_path / "host-sudoers.d"
    outside.mkdir()
    (image / "etc/sudoers.d").rmdir()
    (image / "etc/sudoers.d").symlink_to(outside)
    run = provision(config_file, image)
    assert (
        run.returncode != 0
        and "/etc/sudoers.d/90-azprov-azureuser in the target root" in run.stderr
    )
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


# -- fabric input -----------------------------------------------------------------------------


def test_unicode_retry_after_falls_back_to_backoff(fabric):
    fabric.imds.script([Answer(503, headers={"Retry-After": "²"})], "/metadata/instance")
    with FabricHttp() as http:
        from azprov.fabric.imds import Imds

        metadata = Imds(http, fabric.imds_url, 10).instance_metadata()
    assert metadata.computer_name == fabric.spec.computer_name


def test_a_trickling_reply_cannot_outlive_the_deadline():
    """A server that sends one byte every 0.3 s: each read is quick, the call is not."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                listener.settimeout(0.2)
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(100):
                    if stop.is_set():
                        break
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break
                    time.sleep(0.3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with (
            FabricHttp(RetryPolicy(read_timeout=1)) as http,
            pytest.raises(FabricError, match="within 2 s"),
        ):
            http.call("trickle", "GET", f"http://127.0.0.1:{port}/", Deadline(2))
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("encoding", ["x-foo", "utf-7", "cp932"])
def test_unreadable_xml_encodings_are_fabric_errors(encoding):
    with pytest.raises(FabricError, match="goal state"):
        parse_xml(
            f'<?xml version="1.0" encoding="{encoding}"?><GoalState/>'.encode(), "goal state"
        )


def test_fifo_as_ovf_env_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "ovf-env.xml")
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"holds no ovf-env\.xml"):
        read_media(TargetRoot(tmp_path / "root"), str(tmp_path))
    assert time.monotonic() - started < 2


def test_fifo_among_dhcp_leases_does_not_hang(tmp_path):
    leases = tmp_path / "var/lib/dhcp"
    leases.mkdir(parents=True)
    os.mkfifo(leases / "dhclient.eth0.leases")
    (leases / "dhclient.eth1.leases").write_text("lease {\n  option unknown-245 a8:3f:81:10;\n}\n")
    assert wireserver_from_leases(tmp_path) == "168.63.129.16"


def test_deeply_nested_imds_json_is_retried_not_a_crash(fabric):
    from azprov.fabric.imds import Imds

    fabric.imds.script([Answer(200, b"[" * 200000)], "/metadata/instance")
    with FabricHttp() as http:
        assert Imds(http, fabric.imds_url, 10).instance_metadata().computer_name == "simvm"


# -- config and sshd --------------------------------------------------------------------------


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
