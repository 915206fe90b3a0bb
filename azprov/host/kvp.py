"""Hyper-V KVP: the host-visible key/value pool the platform reads even without a network.

A record is a 512-byte key and a 2048-byte value, UTF-8, NUL-padded; Azure
reads at most the first 1024 bytes of a value. Writers append under an
exclusive flock. A pool older than this boot belongs to an earlier boot and is
emptied first, as the other agents do.

The pool is opened only as the regular file it is (no link anywhere on its
path, no FIFO or device in its place), and a record is written whole or not
at all: a pool with half a record in it is misread from there on by everyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from typing import Iterator, Optional

from azprov.errors import HostError
from azprov.host.confined import Links
from azprov.host.files import create_at, read_fd
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

POOL_DIR = "/var/lib/hyperv"
POOL = f"{POOL_DIR}/.kvp_pool_1"
KEY_SIZE = 512
VALUE_SIZE = 2048
RECORD_SIZE = KEY_SIZE + VALUE_SIZE
VALUE_LIMIT = 1023
# The host enumerates at most 1024 records of a pool (2.5 MiB); cloud-init and the
# other agents append one per event and empty the pool at each boot, so a real pool
# stays well below that. Six times as much is read at most: a larger "pool" is not
# one, and is left alone rather than read into memory.
POOL_CAP = 16 << 20
# A writer holds the lock for one append (milliseconds); two seconds is far beyond
# that, and short enough that a pool held on purpose costs a boot little.
LOCK_WAIT = 2.0
LOCK_RETRY = 0.05


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


@contextlib.contextmanager
def _locked_pool(root: TargetRoot, *, create: bool) -> Iterator[Optional[int]]:
    """The pool, open for reading and writing under the writers' exclusive flock;
    None when there is none (and `create` is False, or there is no /var/lib/hyperv:
    hv_kvp_daemon is not installed). UnsafePath when it is not a regular file."""
    if create:
        try:
            with root.directory(POOL_DIR, create=False, links=Links.REFUSE) as dir_fd:
                create_at(dir_fd, os.path.basename(POOL), 0o644)
        except FileNotFoundError:
            yield None
            return
    with root.open_regular(POOL, links=Links.REFUSE, writable=True) as fd:
        if fd is not None:
            _lock(fd)  # released when the descriptor is closed
        yield fd


def _lock(fd: int) -> None:
    """The writers' exclusive flock, waited for at most LOCK_WAIT seconds: the pool is
    0644, so any local user can open and hold it, and must not hang provision.
    HostError when it stays taken (the caller gives up that record: KVP is best effort)."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise HostError(
                    f"{POOL} stayed locked by another process for {LOCK_WAIT:g} s", path=POOL
                ) from None
            time.sleep(LOCK_RETRY)


def write_kvp(root: TargetRoot, key: str, value: str) -> bool:
    """Append one record when the root has /var/lib/hyperv; False when there is no pool
    or the record could not be written whole (then nothing of it is left)."""
    try:
        with _locked_pool(root, create=True) as fd:
            if fd is None:
                log.debug("no %s: not writing KVP %s", POOL_DIR, key)
                return False
            if root.live and os.fstat(fd).st_mtime < _boot_time():
                os.ftruncate(fd, 0)  # written by an earlier boot
            _append_whole(fd, encode_record(key, value))
    except (OSError, HostError) as exc:
        # KVP is a second channel to the host: losing it must never lose the report itself.
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.warning("could not write KVP %s to %s: %s", key, POOL, detail)
        return False
    return True


def _append_whole(fd: int, record: bytes) -> None:
    """Append `record` at the end of the pool, or leave the pool as it was: a short
    write (a disk filling up) is continued, and a failure (ENOSPC, EIO, EFBIG) takes
    back what was written, so the pool is cut back to the record boundary it had."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        _write_all(fd, record, start)
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        raise


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset`, continuing after short writes."""
    written = 0
    while written < len(data):
        count = os.pwrite(fd, data[written:], offset + written)
        if count == 0:  # a regular file never takes nothing; never loop on it
            raise OSError(0, "the pool took no more bytes")
        written += count


# The keys azprov writes; deprovision removes exactly these records and keeps others'.
AZPROV_KEYS = frozenset({"PROVISIONING_REPORT"})


def _read_pool(fd: int) -> bytes:
    return read_fd(fd, POOL_CAP, POOL)


def count_own_records(root: TargetRoot) -> int:
    """How many records in the root's pool azprov wrote: 0 when there is no pool, or
    when it is not one azprov will touch (a FIFO, a link, far too large: a warning)."""
    try:
        with _locked_pool(root, create=False) as fd:
            data = _read_pool(fd) if fd is not None else b""
    except (OSError, HostError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.warning("leaving the KVP pool alone: %s", detail)
        return 0
    return sum(1 for key, _ in decode_records(data) if key in AZPROV_KEYS)


def remove_own_records(root: TargetRoot) -> None:
    """Rewrite the pool without azprov's records, under the writers' lock, in place."""
    try:
        with _locked_pool(root, create=False) as fd:
            if fd is None:
                return
            records = decode_records(_read_pool(fd))
            kept = b"".join(encode_record(k, v) for k, v in records if k not in AZPROV_KEYS)
            # Over the old content first, then cut: this needs no new disk space.
            _write_all(fd, kept, 0)
            os.ftruncate(fd, len(kept))
            os.fsync(fd)
    except OSError as exc:
        raise HostError(f"cannot rewrite {POOL}: {exc.strerror or exc}", path=POOL) from None
