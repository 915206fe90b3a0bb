"""The DHCP renewal that publishes the host name to Azure DNS, after Ready.

Under systemd, azprov's unit is Type=oneshot: sshd waits for its exit, and its
leftover processes are killed at that exit. So the renewal is handed to systemd
as a unit of its own that starts after azprov's, and azprov does not wait for it.
Run any other way (by hand, offline on an image) it stays inline, as before.

"Under systemd" is simulated: INVOCATION_ID set (systemd sets it for a service)
and fake systemd-run, systemctl and networkctl first on the tools' PATH. The
root is a temporary image; it is made to look live only once `apply` is done
(the host name written), and the hand-over to systemd sees a live view of it, so
those steps run as on a live system while every file stays under the image.
"""

from __future__ import annotations

import copy
import errno
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

import azprov.host.root as root_module
import azprov.provision as provision_module
import azprov.run as run_module
from azprov.config import load_config
from azprov.host import state
from azprov.host.hostkeys import ensure_host_keys
from azprov.host.root import TargetRoot
from azprov.simulate import prepare_root
from azprov.simulator import SimulatedFabric
from tests.conftest import REPO, needs_root

pytestmark = needs_root

RENEWAL_SECONDS = 3.0  # far longer than the rest of the run after Ready
UNIT = "azprov-publish-hostname.service"


class Tools:
    """Fake systemctl (systemd-networkd is running), networkctl (a slow renewal) and
    systemd-run (records its argv; runs the command detached, or refuses)."""

    def __init__(self, directory: Path, refuse: bool = False) -> None:
        self.bin = directory / "bin"
        self.bin.mkdir()
        self.log = directory / "tools.log"
        self.argv_file = directory / "systemd-run.argv"
        self.detached_done = directory / "detached.done"
        self.detached_output = directory / "detached.out"
        self._tool(
            "systemctl",
            'case "$*" in *is-active*systemd-networkd.service*) exit 0;; esac\nexit 3',
        )
        self._tool(
            "networkctl",
            f'sleep {RENEWAL_SECONDS}\necho "networkctl $*" >> {self.log}',
        )
        if refuse:
            run = 'echo "Failed to start transient service unit: Unit exists" >&2\nexit 1'
        else:
            # Detached from the caller, as systemd's own unit would be; the delay makes
            # the handed-over renewal as slow as the inline one.
            run = (
                'while [ "$1" != "--" ]; do shift; done; shift\n'
                f"setsid sh -c 'sleep {RENEWAL_SECONDS}; \"$@\"; touch {self.detached_done}' "
                f'sh "$@" </dev/null >{self.detached_output} 2>&1 &'
            )
        self._tool(
            "systemd-run",
            f'printf "%s\\n" "$@" > {self.argv_file}\necho "systemd-run" >> {self.log}\n{run}',
        )

    def _tool(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(0o755)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def systemd_run_argv(self) -> list[str]:
        return self.argv_file.read_text().splitlines()

    def wait_for_detached(self) -> None:
        deadline = time.monotonic() + 60
        while not self.detached_done.exists():
            assert time.monotonic() < deadline, self.detached_output.read_text()
            time.sleep(0.05)


@pytest.fixture
def image(tmp_path: Path, fabric: SimulatedFabric) -> Path:
    root = tmp_path / "root"
    prepare_root(root, fabric.spec.vm_id)
    ensure_host_keys(TargetRoot(root), "ed25519")
    return root


def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refuse: bool = False) -> Tools:
    tools = Tools(tmp_path, refuse)
    monkeypatch.setitem(root_module._ENV, "PATH", f"{tools.bin}:{root_module.COMMAND_PATH}")
    return tools


def live_after_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image looks like the running system from the end of `apply` on."""
    real_apply: Callable[..., Any] = provision_module.apply

    def apply_then_live(root: TargetRoot, *args: Any) -> Any:
        applied = real_apply(root, *args)
        root.live = True
        return applied

    monkeypatch.setattr(provision_module, "apply", apply_then_live)


def under_systemd(monkeypatch: pytest.MonkeyPatch, fabric: SimulatedFabric) -> list[int]:
    """INVOCATION_ID set, and the hand-over (when there is one: not on 1be6188) sees a
    live view of the image. Returns, per hand-over, how many health reports the fabric
    had by then."""
    monkeypatch.setenv("INVOCATION_ID", uuid.uuid4().hex)
    reports_then: list[int] = []
    real = getattr(run_module, "publish_hostname_in_own_unit", None)

    def hand_over_live(root: TargetRoot, command: list[str]) -> bool:
        reports_then.append(len(fabric.health_reports))
        live = copy.copy(root)
        live.live = True
        assert real is not None
        return bool(real(live, command))

    monkeypatch.setattr(run_module, "publish_hostname_in_own_unit", hand_over_live, raising=False)
    return reports_then


def provision_image(image: Path, config_file: Path) -> float:
    """Provision in this process; returns when it returned (time.monotonic())."""
    provision_module.provision(TargetRoot(image), load_config(image, config_file))
    return time.monotonic()


def last_run(image: Path) -> dict[str, Any]:
    return json.loads((image / "var/lib/azprov/last-run.json").read_text())


def test_under_systemd_the_run_ends_without_waiting_for_a_slow_renewal(
    fabric: SimulatedFabric,
    config_file: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tools = fake_tools(tmp_path, monkeypatch)
    handed_over = under_systemd(monkeypatch, fabric)
    live_after_apply(monkeypatch)
    returned = provision_image(image, config_file)

    (ready,) = fabric.health_reports
    assert ready.state == "Ready"
    # sshd waits for this: the renewal (3 s) is not on that path, nor is the hand-over:
    # it was queued with the host name, before Ready.
    assert returned - ready.at < 1.0
    assert handed_over == [0]
    assert "networkctl" not in " ".join(tools.calls())  # not run inline
    argv = tools.systemd_run_argv()
    options, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    assert {
        "--no-block",  # azprov's unit must end before the renewal can start: no waiting
        "--collect",
        "--quiet",
        f"--unit={UNIT}",
        "--property=Type=oneshot",
        "--property=After=azure-provisioning.service",
        "--property=After=ssh.service",
        "--property=After=sshd.service",
    } <= set(options)
    assert command[:2] == [sys.executable, "-I"]
    assert command[2:] == ["-m", "azprov", "--root", str(image), "publish-hostname"]
    saved = last_run(image)
    assert saved["result"] == "success"
    assert UNIT in saved["publish_hostname"]
    assert json.loads((image / "var/lib/azprov/provisioned.json").read_text())["vm_id"]

    # The unit ran the command: it adds how the renewal went to the run record
    # (this root is not the running system to that process: it skips the renewal).
    tools.wait_for_detached()
    record = last_run(image)
    assert record["publish_hostname"] == ("skipped: the target root is not the running system"), (
        tools.detached_output.read_text()
    )
    assert "publish_hostname" in record["phases"]
    assert record["started_at"] == saved["started_at"]


def test_the_handed_over_renewal_renews_and_adds_its_outcome_to_the_run_record(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azprov.run import HANDED_OVER, publish_hostname_after_run

    tools = fake_tools(tmp_path, monkeypatch)
    root = TargetRoot(image)
    root.live = True
    queued = {"result": "success", "phases": {"apply": 0.5}, "publish_hostname": HANDED_OVER}
    state.save_run(root, queued)
    publish_hostname_after_run(root)

    assert [call for call in tools.calls() if call.startswith("networkctl")] == [
        "networkctl renew " + " ".join(interfaces())
    ]
    record = last_run(image)
    assert record["publish_hostname"].startswith("renewed the DHCP lease through systemd-networkd")
    assert record["phases"]["publish_hostname"] >= RENEWAL_SECONDS
    assert record["phases"]["apply"] == 0.5


def test_the_queued_renewal_waits_for_the_run_that_queued_it_to_end(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started outside azprov's unit (no ordering after it), the renewal could start
    first: it waits for that run's lock, so it reads (and adds to) its final record."""
    from azprov.run import HANDED_OVER, publish_hostname_after_run

    tools = fake_tools(tmp_path, monkeypatch)
    root = TargetRoot(image)
    root.live = True
    renewal = threading.Thread(target=publish_hostname_after_run, args=(root,))
    with state.run_lock(root):
        renewal.start()
        renewal.join(timeout=1.0)
        assert renewal.is_alive() and tools.calls() == []
        state.save_run(root, {"result": "success", "phases": {}, "publish_hostname": HANDED_OVER})
    renewal.join(timeout=30)
    assert tools.calls() == ["networkctl renew " + " ".join(interfaces())]
    assert last_run(image)["publish_hostname"].startswith("renewed the DHCP lease")


def test_a_run_that_failed_after_queueing_the_renewal_publishes_nothing(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The unit is queued with the host name, before Ready: if the run then fails (a
    NotReady, a host key failure after Ready), the VM is not provisioned and the next
    run queues it again."""
    from azprov.run import HANDED_OVER, publish_hostname_after_run

    tools = fake_tools(tmp_path, monkeypatch)
    root = TargetRoot(image)
    root.live = True
    state.save_run(root, {"result": "error", "phases": {}, "publish_hostname": HANDED_OVER})
    with caplog.at_level("INFO"):
        publish_hostname_after_run(root)
    assert tools.calls() == []
    assert "not publishing the host name: the run that queued it did not provision" in caplog.text
    assert last_run(image)["publish_hostname"].startswith("skipped: the run that queued it")


def test_a_record_of_another_run_is_left_alone(image: Path) -> None:
    from azprov.run import publish_hostname_after_run

    root = TargetRoot(image)
    state.save_run(root, {"result": "error", "phases": {"gather": 1.0}})
    publish_hostname_after_run(root)
    assert last_run(image) == {"result": "error", "phases": {"gather": 1.0}}


def test_not_under_systemd_the_renewal_runs_inline_before_the_run_ends(
    fabric: SimulatedFabric,
    config_file: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run by hand from a shell, nothing would outlive azprov's own process for it."""
    tools = fake_tools(tmp_path, monkeypatch)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    live_after_apply(monkeypatch)
    provision_image(image, config_file)

    assert tools.calls() == ["networkctl renew " + " ".join(interfaces())]
    record = last_run(image)
    assert record["publish_hostname"].startswith("renewed the DHCP lease through systemd-networkd")
    assert record["phases"]["publish_hostname"] >= RENEWAL_SECONDS


def test_when_systemd_refuses_the_renewal_it_runs_inline(
    fabric: SimulatedFabric,
    config_file: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tools = fake_tools(tmp_path, monkeypatch, refuse=True)
    under_systemd(monkeypatch, fabric)
    live_after_apply(monkeypatch)
    with caplog.at_level("INFO"):
        provision_image(image, config_file)

    assert tools.calls() == ["systemd-run", "networkctl renew " + " ".join(interfaces())]
    assert "could not hand the DNS renewal to systemd" in caplog.text
    assert "Unit exists" in caplog.text
    assert last_run(image)["publish_hostname"].startswith("renewed the DHCP lease")
    assert [r.state for r in fabric.health_reports] == ["Ready"]


def test_a_systemd_run_that_cannot_be_run_fails_nothing(
    fabric: SimulatedFabric,
    config_file: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The hand-over is queued before Ready: an error starting it (here ENOEXEC from
    every systemd-run on the PATH) must not turn into a NotReady; the renewal runs
    after Ready instead."""
    tools = fake_tools(tmp_path, monkeypatch)
    real_run = subprocess.run

    def run(argv: list[str], **options: Any) -> Any:
        if argv[0] == "systemd-run":
            raise OSError(errno.ENOEXEC, "Exec format error", argv[0])
        return real_run(argv, **options)

    monkeypatch.setattr(root_module.subprocess, "run", run)
    under_systemd(monkeypatch, fabric)
    live_after_apply(monkeypatch)
    with caplog.at_level("INFO"):
        provision_image(image, config_file)

    assert [r.state for r in fabric.health_reports] == ["Ready"]
    assert "could not hand the DNS renewal to systemd" in caplog.text
    assert tools.calls() == ["networkctl renew " + " ".join(interfaces())]


def test_an_offline_root_is_never_handed_to_systemd(
    fabric: SimulatedFabric,
    config_file: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tools = fake_tools(tmp_path, monkeypatch)
    monkeypatch.setenv("INVOCATION_ID", uuid.uuid4().hex)
    with caplog.at_level("INFO"):
        provision_image(image, config_file)

    assert tools.calls() == []
    assert "skipping renewing the DHCP lease to publish the host name" in caplog.text
    assert last_run(image)["publish_hostname"].startswith("skipped")


def test_the_renewal_command_skips_click(image: Path) -> None:
    """What the renewal's unit runs, as a process: no click import on it (the boot goes
    on beside it)."""
    from azprov.run import HANDED_OVER

    queued = {"result": "success", "phases": {}, "publish_hostname": HANDED_OVER}
    state.save_run(TargetRoot(image), queued)
    command = ["-m", "azprov", "--root", str(image), "publish-hostname"]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-I", *command],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "click" not in imported
    assert "skipping renewing the DHCP lease" in result.stderr
    assert last_run(image)["publish_hostname"].startswith("skipped: the target root is not")


def test_the_command_handed_over_is_the_one_the_entry_point_knows() -> None:
    from azprov.cli_entry import PUBLISH_HOSTNAME
    from azprov.run import PUBLISH_HOSTNAME_COMMAND, publish_hostname_command

    assert PUBLISH_HOSTNAME == PUBLISH_HOSTNAME_COMMAND
    assert publish_hostname_command(TargetRoot("/"))[-3:] == ["--root", "/", PUBLISH_HOSTNAME]


def interfaces() -> list[str]:
    """What the renewal names: every interface of this machine but loopback."""
    return sorted(path.name for path in Path("/sys/class/net").iterdir() if path.name != "lo")
