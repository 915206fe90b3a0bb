"""Bench: idle `azprov extensions` rounds — downloads, commands, memory and CPU.

Starts a simulated fabric with two real-shaped extensions (one with protected
settings, so the tenant certificates are fetched too), lets a first
`extensions --once` install and enable them in a throwaway root, then
measures, in this same run:
- an idle round in a *new process* (`--once` again, as from a timer):
  manifest/package/certificate requests and bytes, handler commands run;
- the floor: VmRSS of `python3 -c 'import httpx, click, defusedxml'`;
- the long-running loop: VmRSS / VmHWM while it idles, and CPU time (user +
  system, from /proc/PID/stat) per round in which nothing changed (each such
  round still fetches the goal state and uploads status).
Goals: 0 bytes and 0 commands in the new process; RSS <= floor + 3 MB; <= 50 ms
CPU per idle round.

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
from tests.extensions.simulated import (  # noqa: E402
    SimulatedExtensions,
    publish_sample_and_access,
)

NAME = "Bench.IdleExtension"
OTHER = "Bench.AccessLike"
RSS_OVER_FLOOR_MB = 3.0
CPU_GOAL_MS = 50.0
_FLOOR = (
    "import httpx, click, defusedxml\n"
    "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS')))"
)


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


def _floor_kb(env: dict[str, str]) -> int:
    """VmRSS of a process that only imports the runtime dependencies: the floor."""
    out = subprocess.run(
        [sys.executable, "-c", _FLOOR], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout
    return int(out)


def _downloads(fabric: SimulatedFabric, extensions: SimulatedExtensions) -> tuple[int, int]:
    """(requests, bytes) for manifests, packages and certificates, on any channel."""
    count = size = 0
    for request in fabric.requests:
        location = request.headers.get("x-ms-artifact-location", "")
        if request.service == "storage" and request.method == "GET":
            count, size = count + 1, size + len(extensions.blobs.get(request.route, b""))
        elif request.path.startswith("/extensionArtifact"):
            path = "/" + location.split("/", 3)[-1] if location else ""
            count, size = count + 1, size + len(extensions.blobs.get(path, b""))
        elif "comp=certificates" in request.path:
            count, size = count + 1, size + 4096  # the document's size, roughly
    return count, size


def _commands_run(root: Path) -> int:
    return sum(
        len(log.read_text().splitlines()) for log in (root / "var/lib/waagent").glob("*.ops.log")
    )


def _once(command: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """Run `extensions --once` as a new process: (exit code, CPU seconds, max RSS KB)."""
    process = subprocess.Popen([*command, "--once"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def _publish(extensions: SimulatedExtensions) -> None:
    publish_sample_and_access(extensions, NAME, OTHER, "bench-secret", access_seq_no=3)


def _loop(
    command: list[str],
    env: dict[str, str],
    extensions: SimulatedExtensions,
    args: argparse.Namespace,
) -> tuple[int, float, dict[str, int], dict[str, int]]:
    """The long-running loop idling: (rounds, CPU seconds, memory when idle began, after)."""
    agent = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        # The loop's first round reads the ExtensionsConfig; the idle rounds follow.
        start = len(extensions.status_uploads)
        _wait_for(lambda: len(extensions.status_uploads) >= start + 3, 60)
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
    return rounds, cpu, first_memory, memory


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
            _publish(extensions)
            root = work / "root"
            root.mkdir()
            config = work / "azprov.conf"
            config.write_text(
                fabric.config_text(total_timeout=30)
                + f"[extensions]\npoll_interval = {args.interval}\n",
                encoding="utf-8",
            )
            # --root names a throwaway tree, and the handlers are the bench's own:
            # running them on this host is what is measured.
            command = [sys.executable, "-m", "azprov", "--config", str(config), "--root", str(root),
                       "extensions", "--run-handlers-on-this-host"]  # fmt: skip
            # Bytecode cached as an installed package has it (the checkout's
            # environment may forbid writing it), kept out of the source tree.
            env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pycache")}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            # Warm-up: one round installs and enables the handlers (and caches bytecode).
            code, _, _ = _once(command, env)
            if code != 0:
                raise SystemExit(f"bench: the first round exited {code}")
            before = _downloads(fabric, extensions), _commands_run(root)
            code, once_cpu, once_rss = _once(command, env)  # the idle round, a new process
            after = _downloads(fabric, extensions), _commands_run(root)
            floor = _floor_kb(env)
            costs = _import_costs_kb(env)
            rounds, cpu, first_memory, memory = _loop(command, env, extensions, args)
        finally:
            extensions.stop()

    requests, size = (a - b for a, b in zip(after[0], before[0]))
    print("idle round in a new process (extensions --once, same goal state):")
    print(f"  exit {code}; downloaded {size} bytes in {requests} manifest/package/certificate "
          f"requests (goal 0); handler commands run: {after[1] - before[1]} (goal 0); "
          f"CPU {once_cpu * 1000:.0f} ms, peak RSS {once_rss / 1024:.1f} MB")  # fmt: skip
    rss_mb, hwm_mb, floor_mb = memory["VmRSS"] / 1024, memory["VmHWM"] / 1024, floor / 1024
    cpu_ms = cpu * 1000 / rounds
    print(f"idle extensions loop, {rounds} quiet rounds at {args.interval:g} s intervals")
    print(f"  floor (python3 -c 'import httpx, click, defusedxml'): {floor_mb:.1f} MB")
    print(f"  resident memory: {first_memory['VmRSS'] / 1024:.1f} MB when idle began, "
          f"{rss_mb:.1f} MB after, {hwm_mb:.1f} MB peak; floor + {rss_mb - floor_mb:.1f} MB "
          f"(goal <= floor + {RSS_OVER_FLOOR_MB:g} MB)")  # fmt: skip
    interpreter, dependencies, azprov = (value / 1024 for value in costs)
    print(f"  of which, at import: interpreter {interpreter:.1f} MB, click+httpx+defusedxml "
          f"{dependencies - interpreter:.1f} MB, azprov {azprov - dependencies:.1f} MB")  # fmt: skip
    print(f"  CPU per idle round: {cpu_ms:.1f} ms "
          f"(goal <= {CPU_GOAL_MS:g} ms: {cpu_ms / CPU_GOAL_MS:.2f} of it)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
