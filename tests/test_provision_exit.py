"""The end of the unit's `azprov provision`: sshd waits for that process to exit.

The interpreter's teardown (freeing every module and object) is about 20 ms
natively and many times that on a small emulated or burstable VM; a provisioned
run skips it, once its output is flushed and only its main thread is left.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import atexit, logging, sys, threading, time
import azprov.cli_common as common

THREAD_LEFT = "--thread-left" in sys.argv[1:]

def provision(options):
    atexit.register(lambda: print("teardown ran", file=sys.stderr, flush=True))
    logging.getLogger("azprov.provision").info("provisioned (probe)")
    sys.stdout.write("unflushed")
    if THREAD_LEFT:
        threading.Thread(target=lambda: (time.sleep(0.5), print("thread done"))).start()

common.provision_command = provision
sys.argv = ["azprov", "provision"]
from azprov.cli_entry import main
main()
"""


def run_probe(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_a_provisioned_run_exits_without_the_interpreters_teardown() -> None:
    result = run_probe()
    assert result.returncode == 0, result.stderr
    assert "teardown ran" not in result.stderr
    # Nothing said is lost on the way out.
    assert result.stdout == "unflushed"
    assert "azprov: provisioned (probe)" in result.stderr


def test_a_thread_still_running_is_waited_for_as_before() -> None:
    result = run_probe("--thread-left")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "unflushedthread done\n"
    assert "teardown ran" in result.stderr
