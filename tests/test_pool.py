"""A pre-provisioned pool VM through `azprov provision` (azure-fabric.md §7): a real
process, real HTTP to the simulated fabric's pool, a throwaway root. Ready in the
pool with nothing of anyone's identity applied, the customer's data after the
hand-over, and the refusals (still in a pool after it; sources that disagree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azprov.simulate import prepare_root, snapshot
from azprov.simulator import SimulatedFabric
from azprov.simulator.documents import EXAMPLE_SSH_KEY
from tests.conftest import needs_root, run_azprov
from tests.pool_scenario import (
    CUSTOMER_HOST,
    CUSTOMER_USER,
    HAND_OVER_AFTER,
    PLACEHOLDER_USER,
    POOL_MARKER,
    PROVISIONED,
    PoolVm,
    machine,
    pool_vm,
)

pytestmark = needs_root

HOST_KEYS = ("/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ecdsa_key")
DROP_IN = "/etc/ssh/sshd_config.d/00-azprov.conf"


def users(passwd: Path) -> set[str]:
    return {line.split(":")[0] for line in passwd.read_text().splitlines()}


def assert_nothing_of_anyone(vm: PoolVm, entries: dict[str, tuple[str, str]]) -> None:
    """`entries` (a snapshot) holds nothing of the placeholder's or the customer's."""
    for path in ("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/hostname"):
        assert entries[path] == vm.before[path], f"{path} changed"
    for user in (PLACEHOLDER_USER, CUSTOMER_USER):
        assert f"/home/{user}" not in entries
        assert f"/etc/sudoers.d/90-azprov-{user}" not in entries
    for path in (*HOST_KEYS, DROP_IN, "/" + PROVISIONED):
        assert path not in entries, f"{path} exists"
    assert not [p for p in entries if p.startswith("/etc/ssh/ssh_host_")]
    assert machine(entries) == machine(vm.before)  # and nothing else either


def assert_the_customers(vm: PoolVm) -> None:
    names = users(vm.root / "etc/passwd")
    assert CUSTOMER_USER in names and PLACEHOLDER_USER not in names
    keys = vm.root / f"home/{CUSTOMER_USER}/.ssh/authorized_keys"
    assert keys.read_text() == EXAMPLE_SSH_KEY + "\n"
    assert (vm.root / "etc/hostname").read_text() == f"{CUSTOMER_HOST}\n"
    assert not (vm.root / f"home/{PLACEHOLDER_USER}").exists()
    for key in HOST_KEYS:
        assert (vm.root / key.lstrip("/")).exists(), key
    assert (vm.root / DROP_IN.lstrip("/")).exists()


@pytest.mark.parametrize("kind", ["Running", "Savable"])
def test_ready_in_the_pool_then_the_customers_data(tmp_path: Path, kind: str) -> None:
    with pool_vm(tmp_path, kind) as vm:
        run = vm.provision()
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        # The pool's goal state, then the customer's (the goal state moved at the hand-over).
        assert vm.reports() == [("Ready", "1"), ("Ready", "2")]
        assert vm.pool.handed_over
        assert vm.at_hand_over, "the hand-over never came"
        assert_nothing_of_anyone(vm, vm.at_hand_over)
        assert vm.marker_at_hand_over is not None
        assert (vm.marker_at_hand_over["kind"], vm.marker_at_hand_over["phase"]) == (
            kind,
            "polling",
        )
        assert_the_customers(vm)
        assert not (vm.root / POOL_MARKER).exists()
        marker = json.loads((vm.root / PROVISIONED).read_text())
        assert marker["admin_user"] == CUSTOMER_USER
        pool = marker["pool"]
        assert pool["kind"] == kind
        assert HAND_OVER_AFTER <= pool["waited_seconds"] < HAND_OVER_AFTER + 5
        assert f"in a {kind} pool" in run.stderr or f"{kind} pool" in run.stderr

        status = vm.status()
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith("Pool:"))
        assert kind in line and f"after {pool['waited_seconds']} s" in line
        as_json = vm.status("--json")
        assert as_json.returncode == 0, as_json.stderr
        shown = json.loads(as_json.stdout)["pool"]
        assert (shown["kind"], shown["phase"]) == (kind, "handed over")
        assert shown["waited_seconds"] == pool["waited_seconds"]


def test_os_disk_pool_ready_once_then_a_normal_first_boot(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "PreprovisionedOSDisk", after=None) as vm:
        run = vm.provision()
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        assert vm.reports() == [("Ready", "1")]
        now = snapshot(vm.root)
        assert_nothing_of_anyone(vm, now)
        assert not (vm.root / POOL_MARKER).exists()  # the next boot is an ordinary one
        assert vm.reprovision_requests() == []
        assert "skipping waiting for the host to stop" in run.stderr

        vm.hand_over_with_media()  # the host stops the VM; the customer's CD is attached
        again = vm.provision()
        assert again.returncode == 0, again.stderr
        assert vm.reports() == [("Ready", "1"), ("Ready", "2")]
        assert_the_customers(vm)
        assert "pool" not in json.loads((vm.root / PROVISIONED).read_text())
        assert vm.reprovision_requests() == []
        assert "Pool:" not in vm.status().stdout


def test_still_in_a_pool_after_the_hand_over_is_refused(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Savable") as vm:
        handing = vm.pool.hand_over

        def hand_over_but_imds_still_says_savable() -> None:
            handing()
            vm.fabric.pps_type = "Savable"

        vm.pool.hand_over = hand_over_but_imds_still_says_savable  # type: ignore[method-assign]
        run = vm.provision()
        assert run.returncode != 0
        assert "Traceback" not in run.stderr
        assert "after the hand-over the VM is still" in run.stderr
        reports = vm.fabric.health_reports
        assert [(r.state, r.incarnation) for r in reports] == [("Ready", "1"), ("NotReady", "2")]
        assert reports[-1].description is not None
        assert "reason=still_in_pool" in reports[-1].description
        assert_nothing_of_anyone(vm, snapshot(vm.root))
        assert vm.marker() is not None  # a later boot asks again


def test_ovf_and_imds_naming_different_pools_is_refused(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Running", media_kind="Savable") as vm:
        run = vm.provision()
        assert run.returncode != 0
        assert "Traceback" not in run.stderr
        (report,) = vm.fabric.health_reports
        assert (report.state, report.incarnation) == ("NotReady", "1")
        assert report.description is not None
        assert "reason=pool_kind_contradictory" in report.description
        assert "Savable" in report.description and "Running" in report.description
        assert_nothing_of_anyone(vm, snapshot(vm.root))
        assert vm.marker() is None
        assert vm.reprovision_requests() == []


def test_a_vm_in_no_pool_asks_imds_extended_and_never_for_reprovision_data(
    tmp_path: Path,
) -> None:
    with SimulatedFabric() as fabric:
        root = tmp_path / "root"
        prepare_root(root, fabric.spec.vm_id)
        config = tmp_path / "azprov.conf"
        config.write_text(fabric.config_text(total_timeout=30))
        run = run_azprov("--config", str(config), "--root", str(root), "provision")
        assert run.returncode == 0, run.stderr
        instance = fabric.requests_to("imds", "/metadata/instance")
        assert instance and all(r.query.get("extended") == ["true"] for r in instance)
        assert fabric.requests_to("imds", "/metadata/reprovisiondata") == []
        assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
        assert "pool" not in run.stderr.replace(str(tmp_path), "TMP").lower()
        assert not (root / POOL_MARKER).exists()
        assert "pool" not in json.loads((root / PROVISIONED).read_text())


def test_status_of_a_vm_killed_between_its_marker_and_the_pools_removal(tmp_path: Path) -> None:
    with pool_vm(tmp_path, "Running") as vm:
        die = (
            "import azprov.host.state\n"
            "azprov.host.state.remove_pool_record = "
            "lambda root: os.kill(os.getpid(), signal.SIGKILL)"
        )
        run = vm.provision(trigger=die)
        assert run.returncode == -9, run.stderr
        assert (vm.root / PROVISIONED).exists() and vm.marker() is not None
        again = vm.provision()
        assert again.returncode == 0, again.stderr
        assert "already provisioned" in again.stderr
        assert vm.reports() == [("Ready", "1"), ("Ready", "2")]
        # Provisioned: the pool is history, whatever an old pool.json still says.
        line = next(x for x in vm.status().stdout.splitlines() if x.startswith("Pool:"))
        assert "Running, handed over after" in line, line
        assert json.loads(vm.status("--json").stdout)["pool"]["phase"] == "handed over"
