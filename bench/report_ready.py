"""Benchmark: `azprov report-ready` and `provision` against two references, on a simulated fabric.

Run with the project's interpreter (every case uses the same one):

    .venv/bin/python bench/report_ready.py [--rounds 21]

The references: the seed's stdlib sample (baseline_report_ready.py), and the
*floor* (floor_report_ready.py): the same job done the shortest honest way on
azprov's required libraries (imports click and defusedxml, one
`httpx.Client(trust_env=False)`, GET goal state, POST Ready, nothing else).

Every case runs as a fresh process against one in-process SimulatedFabric on
loopback. Cases alternate within a round (and the order rotates between
rounds), so drift in machine load hits all of them alike. Each run must exit 0
and leave exactly one new health report, so no case can get faster by doing
less. Two measures per run: wall time, and CPU time (user + system of the
process and of the children it waited for, from RUSAGE_CHILDREN deltas), which
wanders far less than wall time on a shared machine. Prints per-case medians,
ratios to the baseline (wall) and to the floor (CPU, with the goals), and the
`-X importtime` top entries of report-ready's import path.

Adding a case: append a `Case` in `cases()`; `prepare(round_dir)` may build a
fresh target root per run, and `argv(round_dir)` returns the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azprov.simulate import prepare_root  # noqa: E402
from azprov.simulator import SimulatedFabric  # noqa: E402

BASELINE = "baseline (seed sample: http.client + ElementTree)"
FLOOR = "floor (httpx.Client + click + defusedxml, GET + POST)"
REFERENCES = (BASELINE, FLOOR)
# The CPU-time goals (issue 17: azprov imports httpx as the floor does), as
# fractions of the floor's median.
REPORT_READY_GOAL = 1.0
PROVISION_GOAL = 1.1
PROVISION_CASE = "azprov provision, image with host keys"


@dataclasses.dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    prepare: Optional[Callable[[Path], None]] = None
    health_reports: int = 1  # health POSTs the fabric must have accepted per run
    source: Optional[Path] = None  # another checkout of azprov to run (--before), else this one


@dataclasses.dataclass
class Bench:
    fabric: SimulatedFabric
    workdir: Path
    python: str
    config: Path
    before: Optional[Path] = None  # --before: an earlier checkout, timed in the same rounds

    def azprov_module(self, *args: str) -> Callable[[Path], list[str]]:
        return lambda root: [
            self.python,
            "-m",
            "azprov",
            "--config",
            str(self.config),
            "--root",
            str(root),
            *args,
        ]

    @property
    def has_script(self) -> bool:
        """The console-script entry point sits beside the interpreter (a venv install)."""
        return (Path(self.python).parent / "azprov").is_file()

    def azprov_script(self, *args: str) -> Callable[[Path], list[str]]:
        script = str(Path(self.python).parent / "azprov")
        return lambda root: [script, "--config", str(self.config), "--root", str(root), *args]


def cases(bench: Bench) -> list[Case]:
    baseline = str(REPO / "bench" / "baseline_report_ready.py")
    floor = str(REPO / "bench" / "floor_report_ready.py")
    endpoint = bench.fabric.wireserver_endpoint
    found = [
        Case(BASELINE, lambda _root: [bench.python, baseline, endpoint]),
        Case(FLOOR, lambda _root: [bench.python, floor, endpoint]),
    ]
    if bench.has_script:
        found.append(
            Case("azprov report-ready (.venv/bin/azprov)", bench.azprov_script("report-ready"))
        )
    found.append(
        Case("azprov report-ready (python -m azprov)", bench.azprov_module("report-ready"))
    )
    # What a report-ready run is made of: the same interpreter doing only parts of it.
    # They post nothing (health_reports=0) and are timed in the same rounds.
    imports = "import httpx, click, defusedxml.ElementTree"
    for label, code in (
        ("part: interpreter start (-c pass)", "pass"),
        ("part: + stdlib imports of the baseline", "import http.client, xml.etree.ElementTree"),
        ("part: + httpx, click, defusedxml imports", imports),
        # Not "+": azprov's own chain, which imports httpx (without its command line).
        (
            "part: azprov's report-ready import path",
            "import azprov.cli, azprov.report, azprov.config, azprov.host.root",
        ),
    ):
        found.append(Case(label, _python_code(bench, code), health_reports=0))
    # -- more cases go here: a fresh target root per run comes from `prepare` ----------
    # provision: a fresh image root and a fresh VM ID every run, the whole job each time.
    found.append(
        Case(
            PROVISION_CASE,
            bench.azprov_module("provision"),
            prepare=lambda root: fresh_image(bench, root, with_host_key=True),
        )
    )
    found.append(
        Case(
            "azprov provision, generalized (makes host keys)",
            bench.azprov_module("provision"),
            prepare=lambda root: fresh_image(bench, root, with_host_key=False),
        )
    )
    if bench.before is not None:
        # The same cases from an earlier checkout, in the same rounds: before/after
        # figures that share the machine's load.
        for name, prepare, command in (
            ("before: azprov report-ready (python -m azprov)", None, "report-ready"),
            (
                f"before: {PROVISION_CASE}",
                lambda root: fresh_image(bench, root, with_host_key=True),
                "provision",
            ),
        ):
            found.append(Case(name, bench.azprov_module(command), prepare, source=bench.before))
    return found


def fresh_image(bench: Bench, root: Path, with_host_key: bool) -> None:
    """A new VM: new VM ID in DMI and in the simulated platform, an unprovisioned root."""
    vm_id = str(uuid.uuid4())
    bench.fabric.spec.vm_id = vm_id
    prepare_root(root, vm_id)
    if with_host_key:
        # Most images still carry a host key; copying one keeps keygen out of this case.
        key = bench.workdir / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        for suffix in ("", ".pub"):
            shutil.copy2(f"{key}{suffix}", root / f"etc/ssh/ssh_host_ed25519_key{suffix}")


def _python_code(bench: Bench, code: str) -> Callable[[Path], list[str]]:
    return lambda _root: [bench.python, "-c", code]


def children_cpu() -> float:
    """User + system seconds of every child this process has waited for, so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class Sample:
    wall: float  # seconds, process start to exit
    cpu: float  # user + system seconds of the process and the children it waited for
    ready: Optional[float]  # seconds, process start to the health POST's arrival


def run_once(bench: Bench, case: Case, run_dir: Path) -> Sample:
    """One fresh process of `case`, checked to have done the whole job."""
    root = run_dir / "root"
    root.mkdir(parents=True)
    if case.prepare is not None:
        case.prepare(root)  # its own children (ssh-keygen) finish before the CPU snapshot
    argv = case.argv(root)
    before = len(bench.fabric.health_reports)
    cpu_before = children_cpu()
    started = time.perf_counter()
    started_monotonic = time.monotonic()
    result = subprocess.run(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=bench.workdir,
        env=clean_environment(case.source),
        check=False,
    )
    elapsed = time.perf_counter() - started
    cpu = children_cpu() - cpu_before
    if result.returncode != 0:
        raise SystemExit(f"{case.name} failed ({result.returncode}): {result.stderr.decode()}")
    posted = len(bench.fabric.health_reports) - before
    if posted != case.health_reports:
        raise SystemExit(f"{case.name}: {posted} health reports, expected {case.health_reports}")
    shutil.rmtree(run_dir)
    ready = bench.fabric.health_reports[-1].at - started_monotonic if posted else None
    return Sample(elapsed, cpu, ready)


def clean_environment(source: Optional[Path] = None) -> dict[str, str]:
    """The caller's environment without proxies or start-up hooks (PYTHONPATH is kept:
    it lets another interpreter, e.g. one with a newer httpx, run this checkout);
    `source` goes first on PYTHONPATH, so `-m azprov` runs that checkout instead."""
    dropped = {"PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.lower().endswith("_proxy")
    }
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(source), env.get("PYTHONPATH"))))
    return env


def import_breakdown(bench: Bench, top: int) -> list[str]:
    """`-X importtime` of one report-ready run: top cumulative entries and self time by package."""
    root = bench.workdir / "importtime-root"
    root.mkdir(exist_ok=True)
    argv = bench.azprov_module("report-ready")(root)
    result = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]],
        capture_output=True,
        text=True,
        cwd=bench.workdir,
        env=clean_environment(),
        check=True,
    )
    rows: list[tuple[int, int, str]] = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_text, cumulative_text, name = line[len("import time:") :].split("|")
        rows.append((int(self_text), int(cumulative_text), name.strip()))
    by_package: dict[str, int] = {}
    for own_us, _, name in rows:
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0) + own_us
    total = sum(row[0] for row in rows)
    lines = [f"imports: {total / 1000:.1f} ms in {len(rows)} modules (self time, summed)"]
    lines.append("  by top-level package (self ms):")
    for package, us in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"    {us / 1000:7.1f}  {package}")
    lines.append("  top cumulative entries (ms):")
    for _, cumulative_us, name in sorted(rows, key=lambda row: -row[1])[:top]:
        lines.append(f"    {cumulative_us / 1000:7.1f}  {name}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=21, help="timed rounds (at least 7; the goals need 21)"
    )
    parser.add_argument("--top", type=int, default=15, help="import-time entries to show")
    parser.add_argument(
        "--no-parts", action="store_true", help="skip the 'part:' cases (what a run is made of)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="run only cases whose name contains this (the baseline and the floor always run)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="an earlier checkout of the repository (git worktree add DIR REV): its"
        " report-ready and provision cases run in the same rounds",
    )
    args = parser.parse_args()
    if args.before is not None and not (args.before / "azprov" / "__main__.py").is_file():
        parser.error(f"--before {args.before}: no azprov/__main__.py there")
    if args.rounds < 7:
        parser.error("--rounds must be at least 7")

    with tempfile.TemporaryDirectory(prefix="azprov-bench-") as tmp, SimulatedFabric() as fabric:
        workdir = Path(tmp)
        config = workdir / "azprov.conf"
        config.write_text(fabric.config_text(total_timeout=30), encoding="utf-8")
        bench = Bench(fabric, workdir, sys.executable, config, args.before)
        selected = [
            c
            for c in cases(bench)
            if c.name in REFERENCES
            or (args.only in c.name and not (args.no_parts and c.name.startswith("part:")))
        ]
        samples: dict[str, list[Sample]] = {case.name: [] for case in selected}

        for index, case in enumerate(selected):  # warm-up: page cache, .pyc files
            run_once(bench, case, workdir / f"warm-{index}")
        for round_number in range(args.rounds):
            shift = round_number % len(selected)
            for offset, case in enumerate(selected[shift:] + selected[:shift]):
                run_dir = workdir / f"r{round_number}-{offset}"
                samples[case.name].append(run_once(bench, case, run_dir))

        for line in report(samples, args.rounds, bench):
            print(line)
        print()
        for line in import_breakdown(bench, args.top):
            print(line)
    return 0


def report(samples: dict[str, list[Sample]], rounds: int, bench: Bench) -> list[str]:
    """The tables: wall time against the baseline, CPU time against the floor, the goals."""
    width = max(len(name) for name in samples)
    lines = [
        f"python: {bench.python} ({sys.version.split()[0]})",
        f"rounds: {rounds} (alternating, order rotated each round; 1 warm-up)",
        "",
        "wall time, process start -> exit (ratio to the baseline):",
    ]
    base = statistics.median(s.wall for s in samples[BASELINE])
    for name, runs in samples.items():
        walls = [s.wall for s in runs]
        median = statistics.median(walls)
        ratio = "" if name == BASELINE else f"   ratio {median / base:.2f}x"
        lines.append(
            f"  {name:<{width}}  median {median * 1000:6.1f} ms"
            f"  (min {min(walls) * 1000:6.1f}, max {max(walls) * 1000:6.1f}){ratio}"
        )
    lines.append(
        "  goal: report-ready <= 1.6x the baseline (the .venv/bin/azprov line is the one"
        " reported); provision <= 2.0x"
    )

    lines += ["", "process start -> health POST received by the fabric (ratio to the baseline):"]
    base_ready = statistics.median(s.ready for s in samples[BASELINE] if s.ready is not None)
    for name, runs in samples.items():
        ready = [s.ready for s in runs if s.ready is not None]
        if ready:
            median = statistics.median(ready)
            ratio = "" if name == BASELINE else f"   ratio {median / base_ready:.2f}x"
            lines.append(f"  {name:<{width}}  median {median * 1000:6.1f} ms{ratio}")

    lines += ["", "CPU time, user + system of the process and its children (ratio to the floor):"]
    floor = statistics.median(s.cpu for s in samples[FLOOR])
    cpu_medians: dict[str, float] = {}
    for name, runs in samples.items():
        cpus = [s.cpu for s in runs]
        cpu_medians[name] = median = statistics.median(cpus)
        ratio = "" if name == FLOOR else f"   ratio {median / floor:.2f}x"
        lines.append(
            f"  {name:<{width}}  median {median * 1000:6.1f} ms"
            f"  (min {min(cpus) * 1000:6.1f}, max {max(cpus) * 1000:6.1f}){ratio}"
        )

    lines += ["", f"goals, CPU time against the floor (median of {rounds} alternating runs):"]
    report_ready = next((name for name in samples if name.startswith("azprov report-ready")), None)
    for judged, goal in ((report_ready, REPORT_READY_GOAL), (PROVISION_CASE, PROVISION_GOAL)):
        if judged is None or judged not in cpu_medians:
            continue
        times_floor = cpu_medians[judged] / floor
        verdict = "pass" if times_floor <= goal else "miss"
        lines.append(f"  {judged:<{width}}  {times_floor:.2f}x  (goal <= {goal:.2f}x)  {verdict}")
    if rounds < 21:
        lines.append(f"  ({rounds} rounds: the goals are judged on at least 21)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
