"""Bench: an idle `azprov extensions` loop — resident memory and CPU time per quiet round.

Starts a simulated fabric with one enabled test extension, runs the real
`python -m azprov extensions` loop against it in a throwaway root, lets it
install and enable the handler, then measures, in this same run:
- VmRSS / VmHWM of the agent process while it idles;
- CPU time (user + system, from /proc/PID/stat) per round in which nothing
  changed (each such round still fetches the goal state and uploads status).
Goals: <= 30 MB RSS, <= 50 ms CPU per idle round.

    .venv/bin/python bench/extensions_idle.py [--rounds 30] [--interval 0.2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azprov.simulator import SimulatedFabric

REPO = Path(__file__).resolve().parent.parent
# The extension side of the simulated fabric and its handlers are test code.
sys.path.insert(0, str(REPO))
from tests.extensions.simulated import PluginSpec, SimulatedExtensions  # noqa: E402

NAME = "Bench.IdleExtension"
RSS_GOAL_MB = 30.0
CPU_GOAL_MS = 50.0


def _memory_kb(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_IMPORT_PROBE = """
import sys
def rss():
    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS'))
sizes = [rss()]
import click, httpx, defusedxml.ElementTree
sizes.append(rss())
import azprov.cli, azprov.fabric.client, azprov.extensions.runner
sizes.append(rss())
print(*sizes)
"""


def _import_costs_kb(env: dict[str, str]) -> list[int]:
    """VmRSS of a bare interpreter, after the runtime dependencies, after azprov's modules."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout
    return [int(value) for value in out.split()]


def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    if not condition():  # type: ignore[operator]
        raise SystemExit("bench: the agent did not get there in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="idle rounds to measure")
    parser.add_argument("--interval", type=float, default=0.2, help="poll interval, seconds")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="azprov-bench-") as scratch,
        SimulatedFabric() as fabric,
    ):
        work = Path(scratch)
        extensions = SimulatedExtensions(fabric, work / "simulator").start()
        try:
            extensions.publish_test_extension(NAME, "1.0.0")
            extensions.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
            root = work / "root"
            root.mkdir()
            config = work / "azprov.conf"
            config.write_text(
                fabric.config_text(total_timeout=30)
                + f"[extensions]\npoll_interval = {args.interval}\n",
                encoding="utf-8",
            )
            command = [sys.executable, "-m", "azprov", "--config", str(config), "--root", str(root),
                       "extensions"]  # fmt: skip
            # Bytecode cached as an installed package has it (the checkout's
            # environment may forbid writing it), kept out of the source tree.
            env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            # Warm-up: one round installs and enables the handler (and caches bytecode).
            subprocess.run([*command, "--once"], cwd=REPO, env=env, check=True,
                           stderr=subprocess.DEVNULL, timeout=120)  # fmt: skip
            costs = _import_costs_kb(env)
            agent = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
            try:
                # The loop's first round checks every handler; the idle rounds follow.
                _wait_for(lambda: len(extensions.status_uploads) >= 4, 60)
                first_uploads = len(extensions.status_uploads)
                first_cpu = _cpu_seconds(agent.pid)
                first_memory = _memory_kb(agent.pid)
                _wait_for(
                    lambda: len(extensions.status_uploads) >= first_uploads + args.rounds,
                    args.rounds * (args.interval + 1) + 30,
                )
                rounds = len(extensions.status_uploads) - first_uploads
                cpu = _cpu_seconds(agent.pid) - first_cpu
                memory = _memory_kb(agent.pid)
            finally:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=30)
        finally:
            extensions.stop()

    rss_mb = memory["VmRSS"] / 1024
    hwm_mb = memory["VmHWM"] / 1024
    cpu_ms = cpu * 1000 / rounds
    print(f"idle extensions loop, {rounds} quiet rounds at {args.interval:g} s intervals")
    print(f"  resident memory: {first_memory['VmRSS'] / 1024:.1f} MB when idle began, "
          f"{rss_mb:.1f} MB after, {hwm_mb:.1f} MB peak "
          f"(goal <= {RSS_GOAL_MB:g} MB: {rss_mb / RSS_GOAL_MB:.2f} of it)")  # fmt: skip
    interpreter, dependencies, azprov = (value / 1024 for value in costs)
    print(f"  of which, at import: interpreter {interpreter:.1f} MB, click+httpx+defusedxml "
          f"{dependencies - interpreter:.1f} MB, azprov {azprov - dependencies:.1f} MB")  # fmt: skip
    print(f"  CPU per idle round: {cpu_ms:.1f} ms "
          f"(goal <= {CPU_GOAL_MS:g} ms: {cpu_ms / CPU_GOAL_MS:.2f} of it)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
