"""Every example a long run saved in tests/fuzz/examples/, replayed at every CI run.

The `ci` profile fixes each target's seed, and with a fixed seed Hypothesis
does not read its database: so the targets run a second time, in a process of
their own, under the `replay` profile, which runs nothing but the saved
examples (read-only).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.hostile import PROFILE

HERE = Path(__file__).parent


@pytest.mark.skipif(PROFILE != "ci", reason="the long run reads and writes the database itself")
def test_every_example_a_long_run_saved_still_gives_a_value_or_a_typed_error() -> None:
    replay = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", str(HERE)],
        env={**os.environ, "AZPROV_FUZZ_PROFILE": "replay"},
        cwd=HERE.parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = replay.stdout.splitlines()
    failures = [line for line in lines if line.startswith("FAILED")]
    assert replay.returncode == 0, "\n".join(failures or lines[-40:] or [replay.stderr[-4000:]])
