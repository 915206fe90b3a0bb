"""`azprov simulate --pool KIND`: the narrated pool run, for each kind."""

from __future__ import annotations

import pytest

from tests.conftest import needs_root, run_azprov

pytestmark = needs_root


def _section(text: str, heading: str) -> list[str]:
    """The lines under `== heading ==`, up to the next heading."""
    lines = text.split(f"== {heading} ==\n", 1)[1].split("\n== ", 1)[0]
    return [line.strip() for line in lines.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["running", "savable", "os-disk"])
def test_simulate_pool_shows_two_ready_reports_and_nothing_of_anyone_before_the_hand_over(kind):
    run = run_azprov("simulate", "--pool", kind)
    assert run.returncode == 0, run.stdout + run.stderr
    reports = _section(run.stdout, "Health reports")
    assert reports == [
        "Ready for incarnation 1 (before the hand-over)",
        "Ready for incarnation 2 (after the hand-over)",
    ]
    by_hand_over = _section(run.stdout, "What changed in the target root by the hand-over")
    # Only azprov's own state (and, for a VM still running, host keys being made in its
    # private work directory): no user, key, host name, sshd policy or installed host key.
    assert all(
        line == "nothing" or line[2:].startswith("/var/lib/azprov") for line in by_hand_over
    )
    after = " ".join(_section(run.stdout, "What changed after it"))
    for path in ("/home/contoso/.ssh/authorized_keys", "/etc/hostname", "/etc/ssh/sshd_config.d"):
        assert path in after
    assert "/home/pool" not in run.stdout and "90-azprov-pool" not in run.stdout


def test_simulate_pool_refuses_an_unknown_kind():
    run = run_azprov("simulate", "--pool", "frozen")
    assert run.returncode == 2
    assert "frozen" in run.stderr and "Traceback" not in run.stderr
