"""Running a piece of azprov in a child process bounded in time and memory.

For tests of what used to hang (a FIFO read) or read until memory ran out (a link
to /dev/zero): the old behaviour then fails the test instead of taking the machine.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bounded(
    code: str, *, seconds: float = 20.0, memory: int = 1 << 30
) -> subprocess.CompletedProcess[str]:
    """Run Python `code` (with the repository importable); AssertionError when it
    does not finish within `seconds`. Its address space is capped at `memory` bytes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=seconds,
            preexec_fn=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"did not finish within {seconds:g} s (it hangs)") from None
