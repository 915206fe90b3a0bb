"""A pool anyone can open (0644) and flock: a held lock delays a KVP write by a bounded
time, then that write is given up with a warning; provision never hangs (review M1)."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tests.host.bounded import run_bounded


def test_kvp_write_gives_up_on_a_pool_another_process_keeps_locked(tmp_path: Path) -> None:
    (tmp_path / "var/lib/hyperv").mkdir(parents=True)
    pool = tmp_path / "var/lib/hyperv/.kvp_pool_1"
    pool.write_bytes(b"")
    holder = os.open(pool, os.O_RDONLY)  # what any local user can do to a 0644 file
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        run = run_bounded(
            "import logging, sys\n"
            "logging.basicConfig(stream=sys.stderr)\n"
            "from azprov.host.kvp import write_kvp\n"
            "from azprov.host.root import TargetRoot\n"
            f"print(write_kvp(TargetRoot({str(tmp_path)!r}), 'PROVISIONING_REPORT', 'x'))\n",
            seconds=15,
        )
        elapsed = time.monotonic() - started
    finally:
        os.close(holder)
    assert run.stdout.strip() == "False", run.stderr
    assert "locked" in run.stderr and ".kvp_pool_1" in run.stderr, run.stderr
    assert elapsed < 10
    assert pool.read_bytes() == b""
