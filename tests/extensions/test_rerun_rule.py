"""One rule for what runs again (reference §6): a handler's own failure (a non-zero exit,
a timeout) stands until a new extensions goal state or the next boot, whatever happens to
the other handlers; what failed on azprov's side (a download, the certificates, the
upload, a stale container, the runner stopped mid-command) is tried again next round."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from azprov.simulator import Answer, SimulatedFabric
from tests.conftest import REPO
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

FAILING = "Rerun.Sample"  # sample.py shape: its enable exits 2
FLAKY = "Rerun.Access"  # VMAccess shape: its package cannot be had in the first round
BOOT_ID = "proc/sys/kernel/random/boot_id"
FIRST_BOOT = "5c1b1f3e-0000-4000-8000-000000000001"
SECOND_BOOT = "5c1b1f3e-0000-4000-8000-000000000002"


def _publish(ext: SimulatedExtensions) -> None:
    ext.storage_reachable = True  # both channels answer: a 503 on both is transient
    ext.publish(FAILING, "1.0.0", extension_zip(FAILING, "1.0.0", style="sample"))
    ext.publish(FLAKY, "1.5.0", extension_zip(FLAKY, "1.5.0", style="access"))
    ext.plugins = [
        PluginSpec(FAILING, "1.0", seq_no=1, public_settings={"enable": {"exit": 2}}),
        PluginSpec(FLAKY, "1.5", seq_no=1),
    ]


def _set_boot_id(root: Path, boot_id: str) -> None:
    path = root / BOOT_ID
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{boot_id}\n")


def test_a_failed_enable_is_not_rerun_because_another_handlers_download_failed(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish(ext)
    ext.artifact_faults[f"/packages/{FLAKY}-1.5.0.zip"] = Answer(503, b"ServerBusy")
    with agent.runner() as runner:
        runner.round()
        assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]
        assert agent.ops(FLAKY) == []
        ext.artifact_faults.clear()
        runner.round()  # the download is tried again ...
        assert agent.op_names(FLAKY) == ["enable@1.5.0"]
        runner.round()
    # ... and the failed enable stands: it ran once, in the first round only.
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]
    entries = handler_entries(ext.status_document())
    assert entries[FAILING]["status"] == "NotReady"
    assert entries[FLAKY]["status"] == "Ready"


@pytest.mark.parametrize("failure", ["exit", "timeout"])
def test_a_handlers_own_failure_runs_once_more_after_a_reboot_and_never_before(
    ext: SimulatedExtensions, agent: Agent, failure: str
) -> None:
    _publish(ext)
    extra = ""
    if failure == "timeout":
        ext.plugins[0].public_settings = {"enable": {"sleep": 30}}
        extra = f"[extension {FAILING}]\nenable_timeout = 1\n"
    _set_boot_id(agent.root, FIRST_BOOT)
    assert agent.once(extra) == 1
    assert agent.once() == 1  # the same boot, new processes: it stands
    assert agent.once() == 1
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]

    _set_boot_id(agent.root, SECOND_BOOT)  # the VM rebooted
    assert agent.once() == 1
    assert agent.once() == 1
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0", "enable@1.0.0"]
    assert agent.op_names(FLAKY) == ["enable@1.5.0"]  # what succeeded is not run again
    entries = handler_entries(ext.status_document())
    assert entries[FAILING]["status"] == "NotReady"
    assert entries[FLAKY]["status"] == "Ready"


def test_a_handler_waiting_for_a_dependency_whose_download_failed_runs_once_it_works(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    _publish(ext)
    ext.plugins[0].public_settings = {}
    ext.plugins[0].dependency_level, ext.plugins[0].depends_on = 1, (FLAKY,)
    ext.artifact_faults[f"/packages/{FLAKY}-1.5.0.zip"] = Answer(503, b"ServerBusy")
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        message = handler_entries(ext.status_document())[FAILING]["formattedMessage"]
        assert f"it depends on {FLAKY}, which failed" in message["message"]
        assert agent.ops(FAILING) == []
        ext.artifact_faults.clear()
        assert runner.round().exit_code == 0
    assert agent.op_names(FLAKY) == ["enable@1.5.0"]
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]


def test_a_handler_waiting_for_a_dependency_that_failed_on_its_own_stands(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    _publish(ext)
    ext.plugins[1].dependency_level, ext.plugins[1].depends_on = 1, (FAILING,)
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        assert runner.round().exit_code == 1
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]
    assert agent.ops(FLAKY) == []


def test_certificates_that_could_not_be_written_are_written_next_round_and_the_handler_waits(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    fabric.spec.certificates = True
    _publish(ext)
    ext.plugins[0].public_settings = {}
    ext.plugins[0].protected_settings = {"password": "Waits-For-Its-Key-1"}
    blocker = agent.lib(f"{ext.tenant.thumbprint}.prv") / "x"
    blocker.mkdir(parents=True)
    with agent.runner() as runner:
        assert runner.round().exit_code == 1
        message = handler_entries(ext.status_document())[FAILING]["formattedMessage"]
        assert "waiting for the tenant certificates" in message["message"]
        assert agent.ops(FAILING) == []  # not run to fail on a key it cannot have
        assert agent.op_names(FLAKY) == ["enable@1.5.0"]  # no secrets: not held up
        blocker.rmdir()
        blocker.parent.rmdir()
        assert runner.round().exit_code == 0
    assert agent.op_names(FAILING) == ["install@1.0.0", "enable@1.0.0"]
    assert (agent.lib(f"{FAILING}-1.0.0") / "decrypted.json").is_file()


def test_a_runner_killed_mid_command_runs_that_command_again(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    _publish(ext)
    ext.plugins[0].public_settings = {"enable": {"sleep": 2}}
    args = [sys.executable, "-m", "azprov", "--config", str(ext_config), "--root", str(target)]
    args += ["extensions", "--once", "--run-handlers-on-this-host"]
    ops = target / "var/lib/waagent" / f"{FAILING}.ops.log"
    runner = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while '"enable"' not in (ops.read_text() if ops.exists() else ""):
        assert time.monotonic() < deadline and runner.poll() is None
        time.sleep(0.05)
    runner.kill()  # as a reboot or an OOM kill would, mid-enable
    runner.wait()
    time.sleep(2.5)  # the orphaned enable finishes on its own
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    enables = [line for line in ops.read_text().splitlines() if '"enable"' in line]
    assert len(enables) == 2
