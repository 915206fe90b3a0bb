"""The Hyper-V KVP pool of the target root: a record is written whole or not at all, and
a pool that is not azprov's kind of file (a FIFO, a link to a device) is refused at once."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from azprov.host.kvp import (
    KEY_SIZE,
    POOL_CAP,
    VALUE_SIZE,
    count_own_records,
    decode_records,
    encode_record,
    remove_own_records,
    write_kvp,
)
from azprov.host.root import TargetRoot
from tests.host.bounded import run_bounded

RECORD = KEY_SIZE + VALUE_SIZE


def image(root: Path) -> Path:
    (root / "var/lib/hyperv").mkdir(parents=True)
    return root / "var/lib/hyperv/.kvp_pool_1"


def test_records_are_appended_whole(tmp_path: Path) -> None:
    pool = image(tmp_path)
    root = TargetRoot(tmp_path)
    assert write_kvp(root, "PROVISIONING_REPORT", "result=success")
    assert write_kvp(root, "OTHER", "x")
    assert decode_records(pool.read_bytes()) == [
        ("PROVISIONING_REPORT", "result=success"),
        ("OTHER", "x"),
    ]
    assert pool.stat().st_mode & 0o777 == 0o644


def test_no_hyperv_directory_means_no_pool_and_no_error(tmp_path: Path) -> None:
    assert write_kvp(TargetRoot(tmp_path), "K", "v") is False
    assert not (tmp_path / "var").exists()


def test_a_record_cut_short_by_a_full_disk_is_taken_back(tmp_path: Path) -> None:
    """The disk fills up mid-record (RLIMIT_FSIZE gives the same short write and then
    EFBIG that a full filesystem gives as ENOSPC): the part written is taken back, the
    failure is logged, and write_kvp says False; the pool stays whole records."""
    pool = image(tmp_path)
    limit = RECORD + 1536  # room for one record and 1536 bytes of the next
    result = run_bounded(
        "import logging, resource, signal, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from azprov.host.kvp import write_kvp\n"
        "from azprov.host.root import TargetRoot\n"
        f"root = TargetRoot({str(tmp_path)!r})\n"
        "assert write_kvp(root, 'FIRST', 'one')\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "print(write_kvp(root, 'SECOND', 'two'))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert "could not write KVP SECOND" in result.stderr
    assert pool.stat().st_size == RECORD
    assert decode_records(pool.read_bytes()) == [("FIRST", "one")]


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """An 8 KiB tmpfs: room for three records and 512 bytes of a fourth."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k,mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_filesystem_never_leaves_half_a_record(
    tiny_filesystem: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = image(tiny_filesystem)
    root = TargetRoot(tiny_filesystem)
    with caplog.at_level(logging.WARNING):
        results = [write_kvp(root, f"KEY{i}", f"value {i}") for i in range(5)]
    assert results == [True, True, True, False, False]
    assert pool.stat().st_size == 3 * RECORD
    assert [k for k, _ in decode_records(pool.read_bytes())] == ["KEY0", "KEY1", "KEY2"]
    assert "could not write KVP KEY3" in caplog.text and "No space left" in caplog.text
    # Space again (azprov's own records go): the next record lands on a record boundary.
    pool.write_bytes(encode_record("KEY0", "value 0"))
    assert write_kvp(root, "KEY5", "value 5")
    assert [k for k, _ in decode_records(pool.read_bytes())] == ["KEY0", "KEY5"]


def test_a_fifo_pool_neither_hangs_nor_stops_deprovision_planning(tmp_path: Path) -> None:
    pool = image(tmp_path)
    os.mkfifo(pool)
    result = run_bounded(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from azprov.host.kvp import count_own_records, write_kvp\n"
        "from azprov.host.root import TargetRoot\n"
        f"root = TargetRoot({str(tmp_path)!r})\n"
        "print(count_own_records(root), write_kvp(root, 'K', 'v'))\n",
        seconds=15,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "False"]
    assert "is a FIFO, not a regular file" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "FIFO" in line]) == 2


def test_a_pool_linked_to_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    pool = image(tmp_path)
    pool.symlink_to("/dev/zero")
    result = run_bounded(
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stderr)\n"
        "from azprov.host.kvp import count_own_records\n"
        "from azprov.host.root import TargetRoot\n"
        f"print(count_own_records(TargetRoot({str(tmp_path)!r})))\n",
        seconds=15,
        memory=512 << 20,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0" and "symbolic link" in result.stderr
    assert "MemoryError" not in result.stderr


def test_a_pool_over_its_cap_is_left_alone_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = image(tmp_path)
    pool.write_bytes(encode_record("PROVISIONING_REPORT", "old"))
    os.truncate(pool, POOL_CAP + RECORD)
    with caplog.at_level(logging.WARNING):
        assert count_own_records(TargetRoot(tmp_path)) == 0
    assert ".kvp_pool_1" in caplog.text and "more than" in caplog.text


def test_removing_azprovs_records_keeps_the_others_in_order(tmp_path: Path) -> None:
    pool = image(tmp_path)
    pool.write_bytes(
        encode_record("A", "1")
        + encode_record("PROVISIONING_REPORT", "build vm")
        + encode_record("B", "2")
    )
    root = TargetRoot(tmp_path)
    assert count_own_records(root) == 1
    remove_own_records(root)
    assert decode_records(pool.read_bytes()) == [("A", "1"), ("B", "2")]
    assert count_own_records(root) == 0
