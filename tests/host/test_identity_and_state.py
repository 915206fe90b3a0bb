"""The VM ID from the firmware (with the Generation 1 byte swap) and azprov's own records."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from azprov.errors import IdentityInvalid, IdentityUnreadable
from azprov.host import state
from azprov.host.identity import read_vm_id, try_vm_id
from azprov.host.root import TargetRoot

UUID = "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c80"


def firmware(root: Path, text: str, *, efi: bool) -> TargetRoot:
    path = root / "sys/class/dmi/id/product_uuid"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    if efi:
        (root / "sys/firmware/efi").mkdir(parents=True)
    return TargetRoot(root)


def test_generation_2_reads_the_uuid_as_written(tmp_path: Path) -> None:
    assert read_vm_id(firmware(tmp_path, UUID.upper() + "\n", efi=True)) == UUID


def test_generation_1_swaps_the_first_three_fields_back(tmp_path: Path) -> None:
    swapped = str(uuid.UUID(bytes=uuid.UUID(UUID).bytes_le))
    assert read_vm_id(firmware(tmp_path, swapped, efi=False)) == UUID


def test_missing_and_invalid_ids_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(IdentityUnreadable, match="cannot read the VM ID"):
        read_vm_id(TargetRoot(tmp_path))
    assert try_vm_id(TargetRoot(tmp_path)) is None
    with pytest.raises(IdentityInvalid, match="is not a UUID") as caught:
        read_vm_id(firmware(tmp_path / "bad", "not-a-uuid", efi=True))
    assert caught.value.reason == "vm_id_invalid"


def test_the_marker_names_the_vm_and_forgets_the_pending_user(tmp_path: Path) -> None:
    root = TargetRoot(tmp_path)
    assert state.provisioned_vm_id(root) is None
    assert state.remember_created_user(root, UUID, "azureuser", created=True) is True
    assert state.remember_created_user(root, UUID, "azureuser", created=False) is True
    assert state.remember_created_user(root, "other-vm", "azureuser", created=False) is False
    state.mark_provisioned(root, UUID, "2026-12-01T00:00:00Z", admin_user="azureuser")
    assert state.provisioned_vm_id(root) == UUID
    assert not (tmp_path / state.CREATED_USER.lstrip("/")).exists()
    assert (tmp_path / state.MARKER.lstrip("/")).stat().st_mode & 0o777 == 0o600


def test_a_garbled_marker_reads_as_not_provisioned(tmp_path: Path) -> None:
    marker = tmp_path / state.MARKER.lstrip("/")
    marker.parent.mkdir(parents=True)
    marker.write_text("{not json")
    assert state.provisioned_vm_id(TargetRoot(tmp_path)) is None
