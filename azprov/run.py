"""The frame of one provisioning run: its phase timings, SIGTERM as a reported failure,
and the DNS renewal (after Ready in the run, or in a systemd unit of its own after it)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional, TypeVar

from azprov.errors import HostError, Terminated
from azprov.host import state
from azprov.host.hostname import (
    PUBLISHING_UNIT,
    publish_hostname,
    publish_hostname_in_own_unit,
    set_hostname,
)
from azprov.host.root import TargetRoot
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

T = TypeVar("T")

# The renewal's place in the run record until its own unit replaces it with how it went.
HANDED_OVER = f"queued in {PUBLISHING_UNIT}, which runs once this run has ended"
# `azprov --root DIR publish-hostname`: what that unit runs (azprov/cli_entry.py).
PUBLISH_HOSTNAME_COMMAND = "publish-hostname"


@dataclasses.dataclass
class RunRecord:
    """How long each phase took, kept for `azprov status`."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    started_at: str = dataclasses.field(default_factory=utc_timestamp)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)
    publishing: Optional[str] = None  # how the DNS renewal went, or HANDED_OVER

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - began, 4)

    def timed(self, name: str, func: Callable[..., T], *args: Any) -> T:
        with self.phase(name):
            return func(*args)

    def summary(self, root: TargetRoot) -> str:
        """Phase times, then each command run and how long it took, as one log line."""
        phases = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.phases.items())
        commands = ", ".join(f"{tool} {seconds:.2f} s" for tool, seconds in root.command_times)
        return f"{phases}; commands: {commands or 'none'}"

    def save(self, root: TargetRoot, vm_id: Optional[str], result: str, line: str) -> None:
        state.save_run(
            root,
            {
                "vm_id": vm_id,
                "result": result,
                "report": line,
                "started_at": self.started_at,
                "finished_at": utc_timestamp(),
                "seconds": round(time.monotonic() - self.started, 4),
                # Copies: a thread still running (the DNS renewal) must not change
                # what is being written.
                "phases": dict(self.phases),
                "commands": [[tool, round(s, 4)] for tool, s in list(root.command_times)],
                **({"publish_hostname": self.publishing} if self.publishing else {}),
            },
        )


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a reported failure instead of a silent death (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise Terminated("stopped by SIGTERM before provisioning finished")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def set_hostname_of_run(root: TargetRoot, name: str, publish: bool, run: RunRecord) -> None:
    """Set the host name; then, with `publish`, under systemd, queue the unit that will
    publish it to Azure DNS once this run has ended. Queued now, beside the user's
    steps, the hand-over (a systemd-run process) is off the path from Ready to this
    unit's exit, which sshd waits for."""
    run.timed("hostname", set_hostname, root, name)
    if not publish:
        return
    began = time.monotonic()
    if publish_hostname_in_own_unit(root, publish_hostname_command(root)):
        run.phases["publish_hostname_handover"] = round(time.monotonic() - began, 4)
        run.publishing = HANDED_OVER


def publish_hostname_of_run(root: TargetRoot, run: RunRecord) -> None:
    """After Ready: renew now unless the renewal was handed to a unit of its own (run by
    hand, offline, or when systemd refused it, nothing would outlive this process)."""
    if run.publishing != HANDED_OVER:
        run.publishing = run.timed("publish_hostname", publish_hostname, root)


def publish_hostname_command(root: TargetRoot) -> list[str]:
    """This interpreter, isolated (-I: the unit's working directory and environment add
    nothing to the module path), running azprov's renewal for `root`."""
    return [
        sys.executable,
        "-I",
        "-m",
        "azprov",
        "--root",
        str(root.path),
        PUBLISH_HOSTNAME_COMMAND,
    ]


def publish_hostname_after_run(root: TargetRoot) -> None:
    """What the renewal's own unit runs. The run that queued it holds the run lock until
    it ends: once the lock is ours, its record says whether it provisioned this VM
    (Ready acknowledged, the marker written). Only then is the lease renewed, and how
    that went goes into the record."""
    try:
        with state.run_lock(root):
            record = state.last_run(root)
            if record is None or record.get("publish_hostname") != HANDED_OVER:
                log.info("no run is waiting for the DNS renewal; nothing to do")
                return
            began = time.monotonic()
            if record.get("result") == "success":
                done = publish_hostname(root)
            else:
                why = "the run that queued it did not provision this VM"
                log.info("not publishing the host name: %s (the next run will)", why)
                done = f"skipped: {why}"
            phases = record.get("phases")
            phases = phases if isinstance(phases, dict) else {}
            seconds = round(time.monotonic() - began, 4)
            record.update(publish_hostname=done, phases={**phases, "publish_hostname": seconds})
            state.save_run(root, record)
    except HostError as exc:
        log.warning("could not record the DNS renewal in %s: %s", state.LAST_RUN, exc)
