"""`azprov provision` end to end: a real process, real HTTP to the simulated fabric,
real useradd --prefix / systemctl --root / openssl in a throwaway image root."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from azprov.host.hostkeys import ensure_host_keys
from azprov.host.kvp import KEY_SIZE, VALUE_SIZE, decode_records
from azprov.host.root import TargetRoot
from azprov.provision import finish
from azprov.run import RunRecord
from azprov.simulate import prepare_root, snapshot
from azprov.simulator import Answer, PublicKey, SimulatedFabric
from azprov.simulator.documents import EXAMPLE_SSH_KEY, ovf_env_xml
from tests.conftest import needs_root, run_azprov, start_azprov

pytestmark = needs_root

PASSWORD = "Very-Secret-Passw0rd-4-tests"
MACHINE_STATE = ("/var/lib/azprov", "/var/lib/hyperv")
VM_ID = "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c8d"  # azprov's own records, not the machine


@pytest.fixture
def image(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    # Most images carry host keys until deprovisioned; keygen is tested separately.
    ensure_host_keys(TargetRoot(root), "ed25519")
    return root


def provision(config: Path, root: Path, *extra: str) -> object:
    return run_azprov("--config", str(config), "--root", str(root), *extra, "provision")


def machine(root: Path) -> dict[str, tuple[str, str]]:
    return {p: v for p, v in snapshot(root).items() if not p.startswith(MACHINE_STATE)}


def with_media(tmp_path: Path, config: Path, **ovf: object) -> Path:
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    (media / "ovf-env.xml").write_bytes(ovf_env_xml(**ovf))  # type: ignore[arg-type]
    with config.open("a", encoding="utf-8") as handle:
        handle.write(f"[media]\npath = {media}\n")
    return media


def kvp_reports(root: Path) -> list[str]:
    data = (root / "var/lib/hyperv/.kvp_pool_1").read_bytes()
    return [v for k, v in decode_records(data) if k == "PROVISIONING_REPORT"]


def test_happy_path_every_file_mode_and_owner(fabric, config_file, image, tmp_path):
    with_media(tmp_path, config_file, password=PASSWORD, custom_data=b"#cloud-config\n")
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr

    report = fabric.health_reports[-1]
    assert (report.state, report.incarnation) == ("Ready", "1")
    assert (report.container_id, report.instance_id) == (
        fabric.spec.container_id,
        fabric.spec.instance_id,
    )
    assert (image / "etc/hostname").read_text() == "simvm\n"

    passwd = (image / "etc/passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("azureuser:"))
    uid, gid, home = int(entry.split(":")[2]), int(entry.split(":")[3]), entry.split(":")[5]
    assert uid >= 1000 and home == "/home/azureuser"

    ssh_dir = image / "home/azureuser/.ssh"
    keys = ssh_dir / "authorized_keys"
    assert (ssh_dir.stat().st_mode & 0o777, ssh_dir.stat().st_uid, ssh_dir.stat().st_gid) == (
        0o700,
        uid,
        gid,
    )
    assert (keys.stat().st_mode & 0o777, keys.stat().st_uid, keys.stat().st_gid) == (
        0o600,
        uid,
        gid,
    )
    assert keys.read_text() == EXAMPLE_SSH_KEY + "\n"

    sudoers = image / "etc/sudoers.d/90-azprov-azureuser"
    assert sudoers.stat().st_mode & 0o777 == 0o440 and sudoers.stat().st_uid == 0
    assert "azureuser ALL=(ALL) ALL" in sudoers.read_text()  # a password exists: sudo asks for it
    dropin = image / "etc/ssh/sshd_config.d/00-azprov.conf"
    assert "PasswordAuthentication no" in dropin.read_text()  # IMDS says "true" (string)

    shadow = next(
        line
        for line in (image / "etc/shadow").read_text().splitlines()
        if line.startswith("azureuser:")
    )
    hashed = shadow.split(":")[1]
    assert hashed.startswith("$6$")
    salt = hashed.split("$")[2]
    again = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=PASSWORD.encode(),
        capture_output=True,
        check=True,
    )
    assert again.stdout.decode().strip() == hashed

    custom = image / "var/lib/azprov/custom-data"
    assert custom.read_bytes() == b"#cloud-config\n" and custom.stat().st_mode & 0o777 == 0o600

    marker = json.loads((image / "var/lib/azprov/provisioned.json").read_text())
    assert marker["vm_id"] == fabric.spec.vm_id and marker["admin_user"] == "azureuser"
    assert (
        marker["user_created"] is True
        and marker["sudoers_file"] == "/etc/sudoers.d/90-azprov-azureuser"
    )
    # lexists: in the image the link's absolute target dangles, so exists() would be False
    # even with the link still there.
    assert not os.path.lexists(
        image / "etc/systemd/system/multi-user.target.wants/azure-provisioning.service"
    )
    assert kvp_reports(image)[-1].startswith("result=success|agent=azprov/")


def test_password_is_never_in_output_or_any_file_but_as_a_hash(
    fabric, config_file, image, tmp_path
):
    with_media(tmp_path, config_file, password=PASSWORD)
    run = run_azprov("-vv", "--config", str(config_file), "--root", str(image), "provision")
    assert run.returncode == 0, run.stderr
    assert PASSWORD not in run.stdout + run.stderr
    for request in fabric.requests:
        assert PASSWORD.encode() not in request.body
    for directory, _, files in os.walk(image):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), path


def test_rerun_is_a_no_op_and_a_new_vm_id_provisions_again(fabric, config_file, image):
    assert provision(config_file, image).returncode == 0
    before, requests = machine(image), len(fabric.requests)
    again = provision(config_file, image)
    assert again.returncode == 0 and "already provisioned" in again.stderr
    assert len(fabric.requests) == requests and machine(image) == before

    new_vm = str(uuid.uuid4())
    fabric.spec.vm_id = new_vm
    (image / "sys/class/dmi/id/product_uuid").write_text(new_vm.upper() + "\n")
    third = provision(config_file, image)
    assert third.returncode == 0, third.stderr
    assert fabric.health_reports[-1].instance_id.startswith(new_vm)
    assert json.loads((image / "var/lib/azprov/provisioned.json").read_text())["vm_id"] == new_vm
    # the user existed already, but azprov made it for the earlier VM of this image
    assert (image / "home/azureuser/.ssh/authorized_keys").read_text().count("ssh-ed25519") == 1


def test_imds_transient_failures_then_success(fabric, config_file, image):
    fabric.imds.script(
        [
            Answer(410),
            Answer(429, headers={"Retry-After": "1"}),
            Answer(500),
            Answer(200, b'{"compute": {"osProf'),
        ],
        "/metadata/instance",
    )
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert [r.status for r in fabric.requests_to("imds")] == [410, 429, 500, 200, 200]
    assert fabric.health_reports[-1].state == "Ready"


def test_wireserver_down_at_start_then_up(fabric, config_file, image):
    fabric.wireserver.down_for(2.0)
    started = time.monotonic()
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert fabric.health_reports[-1].state == "Ready"
    assert time.monotonic() - started < 2.0 + 6.0  # picked up within the backoff cap


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda spec: setattr(spec, "computer_name", "bad_name!"),
            "imds.compute.osProfile.computerName",
        ),
        (
            lambda spec: setattr(spec, "computer_name", "a" * 65),
            "imds.compute.osProfile.computerName",
        ),
        (
            lambda spec: setattr(spec, "admin_username", "root"),
            "imds.compute.osProfile.adminUsername",
        ),
        (
            lambda spec: setattr(spec, "admin_username", "../x"),
            "imds.compute.osProfile.adminUsername",
        ),
        (
            lambda spec: setattr(spec, "admin_username", "daemon"),
            "imds.compute.osProfile.adminUsername",
        ),
        (
            lambda spec: setattr(
                spec,
                "public_keys",
                [
                    PublicKey(
                        EXAMPLE_SSH_KEY + "\nssh-rsa AAAAB3NzaC1yc2E attacker",
                        "/home/azureuser/.ssh/authorized_keys",
                    )
                ],
            ),
            "imds.compute.publicKeys[0].keyData",
        ),
        (
            lambda spec: setattr(
                spec,
                "public_keys",
                [
                    PublicKey(
                        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAAyryGS2tf9pozXd5RuBQCVqcvOOGUhFSEeSgAC7rUY",
                        "",
                    )
                ],
            ),
            "imds.compute.publicKeys[0].keyData",
        ),
        (
            lambda spec: setattr(spec, "disable_password_authentication", "maybe"),
            "disablePasswordAuthentication",
        ),
    ],
)
def test_invalid_input_reports_not_ready_and_changes_nothing(
    fabric, config_file, image, change, field
):
    change(fabric.spec)
    before = machine(image)
    run = provision(config_file, image)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("azprov: error:")]
    assert len(error_lines) == 1 and field in error_lines[0]
    report = fabric.health_reports[-1]
    assert (report.state, report.substatus) == ("NotReady", "ProvisioningFailed")
    assert "reason=invalid_input" in report.description and field in report.description
    assert machine(image) == before
    assert not (image / "var/lib/azprov/provisioned.json").exists()
    assert kvp_reports(image)[-1].startswith("result=error|reason=invalid_input")


def test_oversize_password_is_refused_without_showing_it(fabric, config_file, image, tmp_path):
    secret = "P" * 73
    with_media(tmp_path, config_file, password=secret)
    before = machine(image)
    run = provision(config_file, image)
    assert run.returncode != 0 and "ovf-env.UserPassword" in run.stderr and "72" in run.stderr
    assert secret not in run.stderr and secret not in fabric.health_reports[-1].description
    assert machine(image) == before


def test_key_line_with_trailing_crlf_is_accepted(fabric, config_file, image):
    fabric.spec.public_keys = [
        PublicKey(EXAMPLE_SSH_KEY + "\r\n", "/home/azureuser/.ssh/authorized_keys")
    ]
    fabric.spec.disable_password_authentication = True  # a JSON boolean this time
    assert provision(config_file, image).returncode == 0
    assert (image / "home/azureuser/.ssh/authorized_keys").read_text() == EXAMPLE_SSH_KEY + "\n"


def test_hostile_media_is_refused(fabric, config_file, image, tmp_path):
    media = with_media(tmp_path, config_file)
    (media / "ovf-env.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Environment>&a;</Environment>'
    )
    run = provision(config_file, image)
    assert run.returncode != 0 and "ovf-env.xml: refused" in run.stderr
    assert fabric.health_reports[-1].state == "NotReady"


def test_killed_while_waiting_for_ready_reports_again_next_boot(fabric, config_file, image):
    fabric.wireserver.script([Answer(200, delay=30)], "/machine?comp=health")
    process = start_azprov("--config", str(config_file), "--root", str(image), "provision")
    deadline = time.monotonic() + 30
    while (
        not fabric.requests_to("wireserver", "/machine?comp=health")
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (image / "var/lib/azprov/provisioned.json").exists()

    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert fabric.health_reports[-1].state == "Ready"
    marker = json.loads((image / "var/lib/azprov/provisioned.json").read_text())
    assert marker["user_created"] is True  # still known as azprov's user after the crash


def test_symlink_planted_in_an_existing_home_is_not_followed(fabric, config_file, image, tmp_path):
    subprocess.run(["useradd", "--prefix", str(image), "-m", "azureuser"], check=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (image / "home/azureuser/.ssh").symlink_to(outside)
    run = provision(config_file, image)
    assert run.returncode != 0 and "symbolic link" in run.stderr
    assert list(outside.iterdir()) == []


def test_key_path_outside_home_falls_back_to_the_default(fabric, config_file, image):
    fabric.spec.public_keys = [PublicKey(EXAMPLE_SSH_KEY, "/home/azureuser/../../etc/evil_keys")]
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert not (image / "etc/evil_keys").exists()
    assert (image / "home/azureuser/.ssh/authorized_keys").read_text() == EXAMPLE_SSH_KEY + "\n"


def test_sshd_config_without_include_is_edited_in_place(fabric, config_file, image):
    config = image / "etc/ssh/sshd_config"
    config.write_text(
        "PasswordAuthentication yes\nUsePAM yes\nMatch User backup\n  PasswordAuthentication yes\n"
    )
    assert provision(config_file, image).returncode == 0
    text = config.read_text()
    assert text.splitlines()[1] == "PasswordAuthentication no"
    assert text.count("PasswordAuthentication") == 2  # the global one replaced, the Match one kept
    assert not (image / "etc/ssh/sshd_config.d/00-azprov.conf").exists()


def test_no_password_means_locked_account_and_nopasswd_sudo(fabric, config_file, image):
    assert provision(config_file, image).returncode == 0
    shadow = next(
        line
        for line in (image / "etc/shadow").read_text().splitlines()
        if line.startswith("azureuser:")
    )
    assert shadow.split(":")[1].startswith("!")
    assert "NOPASSWD: ALL" in (image / "etc/sudoers.d/90-azprov-azureuser").read_text()


def test_kvp_record_layout(fabric, config_file, image):
    fabric.spec.computer_name = "-bad"
    provision(config_file, image)
    data = (image / "var/lib/hyperv/.kvp_pool_1").read_bytes()
    assert len(data) == KEY_SIZE + VALUE_SIZE
    assert data[:KEY_SIZE] == b"PROVISIONING_REPORT".ljust(KEY_SIZE, b"\0")
    value = data[KEY_SIZE:].rstrip(b"\0")
    assert len(value) <= 1023 and value.startswith(
        b"result=error|reason=invalid_input|agent=azprov/"
    )
    assert f"vm_id={fabric.spec.vm_id}".encode() in value
    assert value.endswith(b"documentation_url=https://aka.ms/linuxprovisioningerror")


def test_goal_state_unreachable_fails_with_a_clear_message(fabric, tmp_path, image):
    config = tmp_path / "short.conf"
    config.write_text(fabric.config_text(total_timeout=2))
    fabric.wireserver.stop()
    run = provision(config, image)
    assert run.returncode != 0 and "goal state: no usable answer" in run.stderr
    assert "Traceback" not in run.stderr
    assert kvp_reports(image)[-1].startswith("result=error|reason=fabric_timeout")


def test_status_json_after_provisioning(fabric, config_file, image):
    assert provision(config_file, image).returncode == 0
    run = run_azprov("--root", str(image), "status", "--json")
    status = json.loads(run.stdout)
    assert status["provisioned"] is True and status["vm_id"] == fabric.spec.vm_id
    assert status["last_run"]["result"] == "success"
    assert {"gather", "apply", "report", "remember"} <= set(status["last_run"]["phases"])


def test_simulate_runs_the_whole_flow_and_cleans_up():
    run = run_azprov("simulate")
    assert run.returncode == 0, run.stderr
    for heading in ("Requests the fabric saw", "What changed in the target root", "Second boot"):
        assert heading in run.stdout
    assert "Ready for incarnation 1" in run.stdout
    assert "requests to the fabric: 0" in run.stdout


def test_generalized_image_gets_host_keys_and_their_fingerprints_logged(
    fabric, config_file, image
):
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    private = sorted(p.name for p in (image / "etc/ssh").glob("ssh_host_*_key"))
    assert private == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key"]  # the default: no RSA
    assert all((image / "etc/ssh" / name).stat().st_mode & 0o777 == 0o600 for name in private)
    assert run.stderr.count("SSH host key: ") == len(private)
    assert fabric.health_reports[-1].state == "Ready"


def test_imds_never_answering_is_reported_for_the_goal_state_that_did(fabric, tmp_path, image):
    config = tmp_path / "short.conf"
    config.write_text(fabric.config_text(total_timeout=2))
    fabric.imds.stop()
    before = machine(image)
    run = provision(config, image)
    assert run.returncode == 1 and "instance metadata: no usable answer" in run.stderr
    report = fabric.health_reports[-1]
    assert (report.state, report.incarnation) == ("NotReady", "1")
    assert "reason=fabric_timeout" in report.description
    assert machine(image) == before


def test_media_path_without_ovf_env_is_reported(fabric, config_file, image, tmp_path):
    empty = tmp_path / "empty-media"
    empty.mkdir()
    with config_file.open("a") as handle:
        handle.write(f"[media]\npath = {empty}\n")
    run = provision(config_file, image)
    assert run.returncode == 1 and "media.path" in run.stderr
    assert fabric.health_reports[-1].state == "NotReady"


def test_host_key_failure_after_ready_fails_the_unit_and_the_next_boot_retries(
    fabric, config_file, image
):
    """Ready does not wait for the host keys; a failure installing them is not a
    NotReady (the platform already has Ready) but goes to KVP, fails the run and
    leaves no marker, so the next boot tries again."""
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    blocker = image / "etc/ssh/ssh_host_ed25519_key"
    blocker.mkdir()  # a directory where the new key must go: installing it fails
    run = provision(config_file, image)
    assert run.returncode == 1
    assert "ssh_host_ed25519_key" in run.stderr and "Traceback" not in run.stderr
    assert [r.state for r in fabric.health_reports] == ["Ready"]
    assert kvp_reports(image)[-1].startswith("result=error|reason=host_change_failed")
    assert not (image / "var/lib/azprov/provisioned.json").exists()

    blocker.rmdir()
    again = provision(config_file, image)
    assert again.returncode == 0, again.stderr
    assert [r.state for r in fabric.health_reports] == ["Ready", "Ready"]
    assert (image / "etc/ssh/ssh_host_ed25519_key").is_file()
    assert (image / "var/lib/azprov/provisioned.json").is_file()


def test_goal_state_cut_short_once_still_ends_in_ready(fabric, config_file, image):
    """A 200 whose goal-state XML is cut short is retried within the budget (it used
    to end the run at once with nothing reported)."""
    cut = Answer(200, b"<GoalState><Incarnation>1</Incarnation><Container>")
    fabric.wireserver.script([cut, cut], "/machine/?comp=goalstate")
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert "not well-formed XML" in run.stderr
    assert fabric.health_reports[-1].state == "Ready"


def test_host_keys_never_outlive_the_run_in_a_temporary_folder(
    fabric, config_file, image, tmp_path
):
    """The CLI starts key generation before the lock: every way out of the run (already
    provisioned, an unreadable VM ID, success) removes the private folder."""
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    args = ("--config", str(config_file), "--root", str(image), "provision")
    assert run_azprov(*args, env=env).returncode == 0
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()  # a provisioned VM whose keys are gone: the CLI starts making them
    assert run_azprov(*args, env=env).returncode == 0  # already provisioned
    uuid_file = image / "sys/class/dmi/id/product_uuid"
    uuid_file.write_text("not a uuid\n")
    assert run_azprov(*args, env=env).returncode != 0
    assert list(scratch.iterdir()) == []


def test_no_ssh_keygen_still_posts_ready_then_fails_the_unit(fabric, config_file, image, tmp_path):
    """Without ssh-keygen a generalized image cannot get host keys; Ready does not depend
    on them, so it is posted, and the failure goes to KVP and the exit status."""
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import subprocess, sys, runpy\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "real = subprocess.Popen.__init__\n"
        "def fake(self, args, *a, **k):\n"
        "    if args and args[0] == 'ssh-keygen':\n"
        "        raise FileNotFoundError(2, 'No such file', 'ssh-keygen')\n"
        "    real(self, args, *a, **k)\n"
        "subprocess.Popen.__init__ = fake\n"
        "sys.argv = ['azprov', *sys.argv[1:]]\n"
        "runpy.run_module('azprov', run_name='__main__')\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(probe),
            "--config",
            str(config_file),
            "--root",
            str(image),
            "provision",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert result.returncode == 1 and "ssh-keygen is not installed" in result.stderr
    assert "Traceback" not in result.stderr
    assert [r.state for r in fabric.health_reports] == ["Ready"]
    assert kvp_reports(image)[-1].startswith("result=error|reason=host_change_failed")


def test_a_key_set_cut_short_by_a_power_loss_is_made_again(fabric, config_file, image):
    """A power loss while the new keys were being installed leaves a partial set and
    azprov's note saying so: the next boot generates the whole set again."""
    for key in (image / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    ensure_host_keys(TargetRoot(image), "ecdsa")  # the part that made it to disk
    note = image / "etc/ssh/.azprov-host-keys-incomplete"
    note.write_bytes(b"")
    run = provision(config_file, image)
    assert run.returncode == 0, run.stderr
    assert (image / "etc/ssh/ssh_host_ed25519_key").is_file()
    assert not note.exists()


# -- after Ready: the DNS renewal beside the host keys' install -------------------------


def slow_renewal(run: RunRecord, outcome: Exception | None = None) -> Callable[[], None]:
    def renew() -> None:
        time.sleep(0.3)
        run.phases["publish_hostname"] = 0.3
        if outcome is not None:
            raise outcome

    return renew


def test_the_run_record_is_saved_once_the_renewal_beside_it_is_done(image: Path) -> None:
    """`azprov status` shows the renewal, and the record is never written while the
    renewal's thread is still adding to it."""
    root, run = TargetRoot(image), RunRecord()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        publishing = pool.submit(slow_renewal(run))
        finish(root, VM_ID, {}, None, run, publishing)
        assert publishing.done()
    saved = json.loads((image / "var/lib/azprov/last-run.json").read_text())
    assert saved["result"] == "success" and "publish_hostname" in saved["phases"]


def test_a_bug_in_the_renewal_is_logged_and_does_not_fail_a_provisioned_vm(
    image: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, run = TargetRoot(image), RunRecord()
    with concurrent.futures.ThreadPoolExecutor(1) as pool, caplog.at_level("ERROR"):
        publishing = pool.submit(slow_renewal(run, KeyError("eth0")))
        finish(root, VM_ID, {}, None, run, publishing)
    assert "publishing the host name: internal error: KeyError" in caplog.text
    assert json.loads((image / "var/lib/azprov/provisioned.json").read_text())["vm_id"] == VM_ID
