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


def test_notready_is_posted_before_the_kvp_write_that_may_wait_for_its_lock(
    tmp_path: Path,
) -> None:
    """The platform hears of a failure at once; a held KVP lock delays only KVP."""
    from azprov.errors import HostError
    from azprov.host.root import TargetRoot
    from azprov.report import report_failure

    events: list[tuple[str, float]] = []

    class Wire:  # stands in for the WireServer: only the order of the two calls matters
        def report_health(self, health: object, goal_state: object) -> None:
            events.append(("posted", time.monotonic()))

    class Fabric:
        wireserver = Wire()

    (tmp_path / "var/lib/hyperv").mkdir(parents=True)
    pool = tmp_path / "var/lib/hyperv/.kvp_pool_1"
    pool.write_bytes(b"")
    holder = os.open(pool, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        report_failure(TargetRoot(tmp_path), Fabric(), HostError("broken"), "vm")  # type: ignore[arg-type]
        ended = time.monotonic()
    finally:
        os.close(holder)
    assert [name for name, _ in events] == ["posted"]
    assert events[0][1] - started < 0.5  # before the KVP write's wait for the lock
    assert ended - started >= 1.5  # that wait happened after it
