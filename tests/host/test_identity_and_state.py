"""The VM ID from the firmware (with the Generation 1 byte swap) and azprov's own records."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.errors import IdentityInvalid, IdentityUnreadable
from azprov.host import state
from azprov.host.identity import read_vm_id, try_vm_id
from azprov.host.root import TargetRoot
from tests.host.bounded import run_bounded

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
    state.intend_to_create_user(root, UUID, "azureuser")
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


# -- a hostile product_uuid (issue 15, finding 1) ------------------------------------------

HOST_SECRET = "root:$6$hostsalt$THEHOSTSHADOWHASHthatmustneverleave:19000:0:99999:7:::\n"


def test_a_product_uuid_linked_out_of_an_offline_root_is_refused_unread(tmp_path: Path) -> None:
    """An offline image's product_uuid linked to a host file: nothing of that file may
    reach the error (which goes to stderr, KVP and the NotReady description)."""
    secret = tmp_path / "host-shadow"
    secret.write_text(HOST_SECRET)
    root = firmware(tmp_path / "root", UUID, efi=True)
    uuid_file = tmp_path / "root/sys/class/dmi/id/product_uuid"
    uuid_file.unlink()
    uuid_file.symlink_to(secret)
    with pytest.raises(IdentityUnreadable) as caught:
        read_vm_id(root)
    assert "symbolic link" in str(caught.value)
    assert "THEHOSTSHADOW" not in str(caught.value) and "hostsalt" not in str(caught.value)
    assert try_vm_id(root) is None


def test_a_product_uuid_linked_inside_an_offline_root_is_refused_too(tmp_path: Path) -> None:
    """Offline, even a link that stays in the tree is refused: the image's own shadow
    must not be read as a VM ID either."""
    root = firmware(tmp_path, UUID, efi=True)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text(HOST_SECRET)
    uuid_file = tmp_path / "sys/class/dmi/id/product_uuid"
    uuid_file.unlink()
    uuid_file.symlink_to("/etc/shadow")
    with pytest.raises(IdentityUnreadable, match="symbolic link") as caught:
        read_vm_id(root)
    assert "THEHOSTSHADOW" not in str(caught.value)


def test_the_live_root_follows_the_dmi_link_that_sysfs_has(tmp_path: Path) -> None:
    """On a real system /sys/class/dmi/id is itself a link (to ../../devices/virtual/dmi/id):
    the live root resolves it inside the root."""
    real = tmp_path / "sys/devices/virtual/dmi/id"
    real.mkdir(parents=True)
    (real / "product_uuid").write_text(UUID + "\n")
    (tmp_path / "sys/class/dmi").mkdir(parents=True)
    (tmp_path / "sys/class/dmi/id").symlink_to("../../devices/virtual/dmi/id")
    (tmp_path / "sys/firmware/efi").mkdir(parents=True)
    root = TargetRoot(tmp_path)
    with pytest.raises(IdentityUnreadable, match="symbolic link"):
        read_vm_id(root)  # offline: refused
    root.live = True  # what TargetRoot("/") is; the test cannot write the real /sys
    assert read_vm_id(root) == UUID


def test_an_unparseable_vm_id_is_quoted_only_by_a_short_prefix(tmp_path: Path) -> None:
    root = firmware(tmp_path, HOST_SECRET, efi=True)
    with pytest.raises(IdentityInvalid) as caught:
        read_vm_id(root)
    message = str(caught.value)
    assert "is not a UUID" in message
    assert "hostsalt" not in message and "THEHOSTSHADOW" not in message
    assert "root:$6$" in message  # enough to tell what the file holds


def test_a_product_uuid_larger_than_any_uuid_is_refused_unread(tmp_path: Path) -> None:
    root = firmware(tmp_path, UUID + "\n" + "x" * 4096, efi=True)
    with pytest.raises(IdentityInvalid, match="more than") as caught:
        read_vm_id(root)
    assert "xxxxxxxxxxxxxxxx" not in str(caught.value)


def test_a_product_uuid_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "sys/class/dmi/id/product_uuid"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    result = run_bounded(
        "from azprov.host.identity import try_vm_id\n"
        "from azprov.host.root import TargetRoot\n"
        f"print(try_vm_id(TargetRoot({str(tmp_path)!r})))\n",
        seconds=15,
    )
    assert result.returncode == 0 and result.stdout.strip() == "None", result.stderr


def test_the_state_directory_is_private_but_parents_it_makes_are_not(tmp_path: Path) -> None:
    root = TargetRoot(tmp_path)
    with state.run_lock(root):
        pass
    assert (tmp_path / "var").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "var/lib").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "var/lib/azprov").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "var/lib/azprov/lock").stat().st_mode & 0o777 == 0o600


def test_a_state_directory_that_is_a_link_is_state_unwritable(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "var/lib").mkdir(parents=True)
    (tmp_path / "var/lib/azprov").symlink_to(tmp_path / "elsewhere")
    lock = state.run_lock(TargetRoot(tmp_path))
    with pytest.raises(state.StateUnwritable, match="symbolic link") as caught, lock:
        pass
    assert caught.value.reason == "state_unwritable"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_deeply_nested_marker_reads_as_not_provisioned(tmp_path: Path) -> None:
    marker = tmp_path / state.MARKER.lstrip("/")
    marker.parent.mkdir(parents=True)
    marker.write_text("[" * 100_000)
    assert state.provisioned_vm_id(TargetRoot(tmp_path)) is None


def test_the_intent_to_create_a_user_counts_as_created_on_a_rerun(tmp_path: Path) -> None:
    """What a run killed right after useradd leaves: only the intent. The rerun finds
    the user existing and still knows azprov made it."""
    root = TargetRoot(tmp_path)
    state.intend_to_create_user(root, UUID, "azureuser")
    assert state.remember_created_user(root, UUID, "azureuser", created=False) is True
    assert state.remember_created_user(root, UUID, "someoneelse", created=False) is False


@pytest.mark.parametrize("name", [state.MARKER, state.CREATED_USER])
def test_a_state_file_that_is_a_directory_is_state_unwritable_before_the_run(
    tmp_path: Path, name: str
) -> None:
    """The marker is written after Ready, the intent before useradd: a directory in
    either place would fail the run halfway, so the lock (taken first) refuses it."""
    (tmp_path / name.lstrip("/") / "inside").mkdir(parents=True)
    lock = state.run_lock(TargetRoot(tmp_path))
    with pytest.raises(state.StateUnwritable, match=f"{name} is a directory") as caught, lock:
        pass
    assert caught.value.reason == "state_unwritable"


def test_a_state_file_that_cannot_be_replaced_is_one_line_state_unwritable(
    tmp_path: Path,
) -> None:
    """Made a directory after the lock was taken: still one typed line, not an OSError."""
    root = TargetRoot(tmp_path)
    with state.run_lock(root):
        (tmp_path / state.MARKER.lstrip("/") / "inside").mkdir(parents=True)
        with pytest.raises(state.StateUnwritable, match=state.MARKER):
            state.mark_provisioned(root, UUID, "2024-01-01T00:00:00Z")


# Text of UUID-ish characters (not `x`, `_` or `+`: int() takes '0x…' and '1_0', so
# uuid.UUID does too, and azprov refuses them as no firmware writes them).
UUIDISH = st.text(alphabet="0123456789abcdefABCDEF-{}:urnid \n\x00é", max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.uuids().map(str), st.uuids().map(lambda u: f"{{{u}}}"), UUIDISH), st.booleans()
)
def test_the_vm_id_reads_as_python_uuid_reads_it(text: str, efi: bool) -> None:
    """Whatever the firmware says: the ID uuid.UUID would make of it (Generation 1
    byte-swapped), or the typed error, never anything else."""
    try:
        parsed = uuid.UUID(text.strip())
        expected = str(parsed if efi else uuid.UUID(bytes=parsed.bytes_le))
    except ValueError:
        expected = None
    with tempfile.TemporaryDirectory() as tmp:
        root = firmware(Path(tmp), text, efi=efi)
        if expected is None or "\x00" in text or not text.isascii():
            with pytest.raises(IdentityInvalid):
                read_vm_id(root)
        else:
            assert read_vm_id(root) == expected
