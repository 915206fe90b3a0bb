"""The frame of one provisioning run: its phase timings, and SIGTERM as a reported failure."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Iterator, Optional, TypeVar

from azprov.errors import Terminated
from azprov.host import state
from azprov.host.root import TargetRoot
from azprov.timestamps import utc_timestamp

T = TypeVar("T")


@dataclasses.dataclass
class RunRecord:
    """How long each phase took, kept for `azprov status`."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    started_at: str = dataclasses.field(default_factory=utc_timestamp)
    phases: dict[str, float] = dataclasses.field(default_factory=dict)

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
