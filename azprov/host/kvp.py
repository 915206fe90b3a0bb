"""Hyper-V KVP: the host-visible key/value pool the platform reads even without a network.

A record is a 512-byte key and a 2048-byte value, UTF-8, NUL-padded; Azure
reads at most the first 1024 bytes of a value. Writers append under an
exclusive flock. A pool older than this boot belongs to an earlier boot and is
emptied first, as the other agents do.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time

from azprov.errors import HostError
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

POOL = "/var/lib/hyperv/.kvp_pool_1"
KEY_SIZE = 512
VALUE_SIZE = 2048
VALUE_LIMIT = 1023


def encode_record(key: str, value: str) -> bytes:
    """One record: key and value NUL-padded to their fixed sizes (value cut to 1023 bytes)."""
    key_bytes = key.encode("utf-8")[: KEY_SIZE - 1]
    value_bytes = value.encode("utf-8")[:VALUE_LIMIT]
    return key_bytes.ljust(KEY_SIZE, b"\0") + value_bytes.ljust(VALUE_SIZE, b"\0")


def decode_records(data: bytes) -> list[tuple[str, str]]:
    size = KEY_SIZE + VALUE_SIZE
    return [
        (
            data[i : i + KEY_SIZE].rstrip(b"\0").decode("utf-8", "replace"),
            data[i + KEY_SIZE : i + size].rstrip(b"\0").decode("utf-8", "replace"),
        )
        for i in range(0, len(data) - size + 1, size)
    ]


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    return time.time() - time.monotonic()


def write_kvp(root: TargetRoot, key: str, value: str) -> bool:
    """Append one record when the root has /var/lib/hyperv; False when there is no pool."""
    try:
        directory = root / "/var/lib/hyperv"
        if not directory.is_dir():
            log.debug("no %s: not writing KVP %s", directory, key)
            return False
        fd = os.open(root / POOL, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if root.live and os.fstat(fd).st_mtime < _boot_time():
                os.ftruncate(fd, 0)  # written by an earlier boot
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, encode_record(key, value))
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
    except (OSError, HostError) as exc:
        # KVP is a second channel to the host: losing it must never lose the report itself.
        log.warning("could not write KVP %s to %s: %s", key, POOL, exc)
        return False
    return True


# The keys azprov writes; deprovision removes exactly these records and keeps others'.
AZPROV_KEYS = frozenset({"PROVISIONING_REPORT"})


def count_own_records(root: TargetRoot) -> int:
    """How many records in the root's pool azprov wrote (0 when there is no pool)."""
    try:
        data = (root / POOL).read_bytes()
    except (OSError, HostError):
        return 0
    return sum(1 for key, _ in decode_records(data) if key in AZPROV_KEYS)


def remove_own_records(root: TargetRoot) -> None:
    """Rewrite the pool without azprov's records, under the writers' lock, in place."""
    try:
        fd = os.open(root / POOL, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise HostError(f"cannot open {POOL}: {exc.strerror}", path=POOL) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as handle:
            records = decode_records(handle.read())
        kept = b"".join(encode_record(k, v) for k, v in records if k not in AZPROV_KEYS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, kept, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
