"""Attacks on the pre-provisioned pool support through what the image holds:
/var/lib/azprov/pool.json (and provisioned.json's pool) planted by the image builder.

Real processes (`azprov provision` against the simulated fabric's pool, `azprov
status`) in throwaway roots. The bar: nothing planted makes azprov crash (exit 70),
print a control character to a terminal, show another VM's pool as this one's, or
tell the platform Ready in the pool and then NotReady for one bad file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from azprov.simulate import prepare_root
from tests.conftest import needs_root, run_azprov
from tests.pool_scenario import CUSTOMER_USER, POOL_MARKER, PROVISIONED, pool_vm

pytestmark = needs_root

VM_ID = "11111111-2222-4333-8444-555555555555"
# time.gmtime() refuses these (OverflowError, OSError EOVERFLOW): a time_t cannot hold them.
OUT_OF_RANGE = [1e300, -1e300, 10**19, -(10**18)]


def a_root(tmp_path: Path, **files: Any) -> Path:
    """A small image for VM_ID with azprov's state files as given (name -> JSON value)."""
    root = tmp_path / "root"
    prepare_root(root, VM_ID)
    state = root / "var/lib/azprov"
    state.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (state / f"{name}.json").write_text(json.dumps(value))
    return root


def status(root: Path, *extra: str) -> tuple[str, Any]:
    """`azprov status` (text) and `azprov status --json` (parsed): both must succeed."""
    text = run_azprov("--root", str(root), "status", *extra)
    assert text.returncode == 0, text.stderr
    assert "Traceback" not in text.stderr
    as_json = run_azprov("--root", str(root), "status", "--json", *extra)
    assert as_json.returncode == 0, as_json.stderr
    return text.stdout, json.loads(as_json.stdout)


# --- a Ready time no clock can show --------------------------------------------------


@pytest.mark.parametrize("ready_at", OUT_OF_RANGE, ids=repr)
def test_status_shows_a_pool_record_whose_ready_time_is_out_of_range(
    tmp_path: Path, ready_at: float
) -> None:
    root = a_root(
        tmp_path,
        pool={"vm_id": VM_ID, "kind": "Savable", "phase": "polling", "ready_at": ready_at},
    )
    text, shown = status(root)
    assert shown["pool"]["kind"] == "Savable" and shown["pool"]["phase"] == "polling"
    assert shown["pool"]["ready_at"] is None  # no time to show, not a crash
    assert "Pool:         Savable, polling" in text


@pytest.mark.parametrize("ready_at", OUT_OF_RANGE[:2], ids=repr)
def test_a_pool_vm_resumes_with_a_ready_time_out_of_range(tmp_path: Path, ready_at: float) -> None:
    """The record says Ready was reported (the VM resumes); its time is only shown."""
    with pool_vm(tmp_path, "Running", after=None) as vm:
        vm.pool.hand_over()
        record = {"vm_id": vm.fabric.spec.vm_id, "kind": "Running", "phase": "polling"}
        (vm.root / POOL_MARKER).parent.mkdir(parents=True, exist_ok=True)
        (vm.root / POOL_MARKER).write_text(json.dumps({**record, "ready_at": ready_at}))
        run = vm.provision()
        assert run.returncode == 0, run.stderr
        assert "internal error" not in run.stderr and "Traceback" not in run.stderr
        assert "resuming in the Running pool (Ready reported at unknown)" in run.stderr
        assert vm.reports() == [("Ready", "2")]  # no second Ready in the pool
        marker = json.loads((vm.root / PROVISIONED).read_text())
        assert marker["admin_user"] == CUSTOMER_USER
        assert marker["pool"]["ready_at"] == "unknown"
        line = next(x for x in vm.status().stdout.splitlines() if x.startswith("Pool:"))
        assert "Running, handed over" in line


# --- what status prints of a record --------------------------------------------------

FORGED = {
    "vm_id": VM_ID,
    "kind": "Sav\x1b[31mable",
    "phase": "polling\x1b]0;owned\x07\nAdmin user:   root\r\u202eevil",
    "ready_at": 1_700_000_000,
}


def test_status_quotes_control_characters_of_a_pool_record(tmp_path: Path) -> None:
    text, shown = status(a_root(tmp_path, pool=FORGED))
    for bad in ("\x1b", "\x07", "\r", "\u202e"):
        assert bad not in text, repr(bad)
    assert not any(line.startswith("Admin user:") for line in text.splitlines())  # forged
    pool_lines = [line for line in text.splitlines() if line.startswith("Pool:")]
    assert len(pool_lines) == 1 and "\\x1b" in pool_lines[0] and "\\n" in pool_lines[0]
    assert shown["pool"]["phase"] == FORGED["phase"]  # JSON carries the value as it is


def test_status_quotes_control_characters_of_a_handed_over_pool(tmp_path: Path) -> None:
    done = {"vm_id": VM_ID, "provisioned_at": "2024-01-01T00:00:00Z", "admin_user": "alice"}
    pool = {"kind": "Running\x1b[2J\nProvisioned:  no", "ready_at": "x\x1b", "waited_seconds": 1}
    text, _ = status(a_root(tmp_path, provisioned={**done, "pool": pool}))
    assert "\x1b" not in text
    assert [line for line in text.splitlines() if line.startswith("Provisioned:")] == [
        "Provisioned:  yes, at 2024-01-01T00:00:00Z"
    ]


# --- another VM's records --------------------------------------------------------------


def test_status_does_not_show_another_vms_pool_record(tmp_path: Path) -> None:
    """An image captured from a pool VM (or built with a record planted) carries a
    pool.json for another VM ID: this VM was never in that pool."""
    record = {"vm_id": "another-vm", "kind": "Savable", "phase": "polling", "ready_at": 1}
    text, shown = status(a_root(tmp_path, pool=record))
    assert shown["pool"] is None
    assert "Pool:" not in text


def test_status_does_not_show_the_pool_of_another_vms_provisioned_marker(tmp_path: Path) -> None:
    pool = {"kind": "Savable", "ready_at": "2024-01-01T00:00:00Z", "waited_seconds": 5.0}
    marker = {"vm_id": "another-vm", "provisioned_at": "2024-01-01T00:00:00Z", "pool": pool}
    text, shown = status(a_root(tmp_path, provisioned=marker))
    assert shown["pool"] is None
    assert "handed over" not in text
    assert "the marker is for another VM" in text


def test_status_still_shows_this_vms_own_pool_record(tmp_path: Path) -> None:
    record = {"vm_id": VM_ID, "kind": "Savable", "phase": "polling", "ready_at": 1_700_000_000}
    text, shown = status(a_root(tmp_path, pool=record))
    assert shown["pool"]["kind"] == "Savable"
    assert shown["pool"]["ready_at"] == "2023-11-14T22:13:20Z"
    assert "Pool:         Savable, polling since its Ready at 2023-11-14T22:13:20Z" in text


# --- a pool.json azprov cannot write ---------------------------------------------------


def plant_directory(path: Path) -> None:
    path.mkdir()


def plant_fifo(path: Path) -> None:
    os.mkfifo(path)


def plant_link(path: Path) -> None:
    outside = path.parents[4] / "outside.json"  # beside the root, not in it
    outside.write_text("{}")
    path.symlink_to(outside)


@pytest.mark.parametrize(
    "plant", [plant_directory, plant_fifo, plant_link], ids=lambda f: f.__name__
)
def test_a_pool_record_that_cannot_be_written_is_refused_before_the_pools_ready(
    tmp_path: Path, plant: Any
) -> None:
    """The record is what makes a reboot resume instead of reporting in the pool again:
    a VM that cannot keep it must say so before its Ready, not after (Ready, then
    NotReady, for the pool's one incarnation)."""
    with pool_vm(tmp_path, "Running") as vm:
        (vm.root / POOL_MARKER).parent.mkdir(parents=True, exist_ok=True)
        plant(vm.root / POOL_MARKER)
        run = vm.provision()
        assert run.returncode != 0
        assert "Traceback" not in run.stderr and "internal error" not in run.stderr
        errors = [line for line in run.stderr.splitlines() if line.startswith("azprov: error:")]
        assert len(errors) == 1 and "pool.json" in errors[0], run.stderr
        assert vm.reports() == [("NotReady", "1")], run.stderr
        assert not vm.pool.handed_over
        outside = tmp_path / "outside.json"
        assert not outside.exists() or outside.read_text() == "{}"
