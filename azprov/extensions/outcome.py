"""What became of one handler in a reconcile: the record the status report and the next round read.

An `Outcome` is made by the lifecycle (or by the runner, for a handler it
does not run), kept across processes by `memory` so an unchanged goal state
runs nothing again, and turned into the handler's entry of the status
document by `status`.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one handler in the last reconcile, for the status report."""

    name: str
    version: Optional[str]  # the version now on disk (None: nothing installed)
    seq_no: int
    operation: str  # the last step attempted, e.g. "Enable"
    failure: Optional[str] = None  # one-line reason plus output tails, secrets scrubbed
    present: bool = True  # False once uninstalled: nothing to report
    heartbeat: bool = False  # its manifest says reportHeartbeat: heartbeat.log tells its health
    retry: bool = False  # the failure was transient (a timeout, a 5xx): try again next round
    extension: Optional[str] = None  # a multi-config handler's named extension
    multi_config: bool = False  # the handler's outcome for a multi-config handler
    # A multi-config handler: one outcome per named extension still in service (the
    # handler's own outcome then says what became of the handler as a whole).
    named: tuple[Outcome, ...] = ()

    @property
    def failed(self) -> bool:
        return self.failure is not None

    @property
    def failure_line(self) -> str:
        """The failure's first line, for logs and the status message (a failure read
        back from the state file may be empty)."""
        return first_line(self.failure or "")


def first_line(text: str) -> str:
    """The first line of `text`, or a placeholder when it has none."""
    lines = text.splitlines()
    return lines[0] if lines and lines[0] else "no reason recorded"
