"""Bench: a Running pre-provisioned pool VM handed over, azprov vs Debian 12's cloud-init.

Issue 18's goal, measured in the emulated VM (qemu TCG, the emulated-boot tests'
Debian 12 image) against Debian 12's own cloud-init package (22.4.2, which
supports pre-provisioned VMs) booted from the same image recipe with the same
simulated fabric, in the same run:
- azprov: the .deb built from this checkout, its unit with its real defaults;
- cloud-init: the same recipe plus `cloud-init` and no azprov, with only
  emulation plumbing added (bench/pps_image.py says what and why).

Each boot (bench/pps_scenario.py): the pool's placeholder media, the pool's
Ready, the NIC's link off and on through QMP, the hand-over, then from
"reprovisiondata served" (the fabric's 200) to
(a) login-ready: the customer can log in, observed as a real login from the
    host through a forward to the guest's port 22 (bench/pps_login.py): the
    arrival of sshd's banner in the first round whose `ssh customer@... id -un`
    then works (user, key and sshd all in place). Shown beside it: sshd's first
    "Server listening" in the guest's journal, on the host's clock, and when the
    banner's connection was opened (a refused connection is followed by the next
    0.1 s later, so that is soon after sshd listens; from there to the banner,
    0.7 s or more under TCG, is sshd's own time to answer);
(b) the final Ready: the fabric's arrival time of the first Ready after the
    hand-over.
cloud-init posts its final Ready before its later stages create the user and
sshd starts; azprov only after user, keys and sshd.

Goal (issue 18): azprov's served -> login-ready at most half of cloud-init's,
and its Ready within 1 s of its own login-ready moment. Printed, not asserted.

    .venv/bin/python bench/pps_compare.py [--runs N] [--keep-logs DIR]
                                          [--agent both|azprov|cloud-init] [--after REV]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from boot_compare import commit_of, package_of  # noqa: E402
from pps_image import build_cloud_init_image, install_bench_plumbing  # noqa: E402
from pps_scenario import Outcome, run_pool_vm  # noqa: E402

from tests.e2e.image import BootFiles, build_image  # noqa: E402

AZPROV, CLOUD_INIT = "azprov", "cloud-init"
AGENTS = {"both": (AZPROV, CLOUD_INIT), AZPROV: (AZPROV,), CLOUD_INIT: (CLOUD_INIT,)}
LOGIN_RATIO_GOAL = 0.5  # azprov's served -> login-ready <= half of cloud-init's
READY_AFTER_LOGIN_GOAL = 1.0  # azprov's final Ready within 1 s of its login-ready


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="boots per agent (default 1)")
    parser.add_argument(
        "--keep-logs",
        metavar="DIR",
        type=Path,
        help="copy each boot's console, probe log, qemu's stderr and fabric transcript here",
    )
    parser.add_argument("--agent", choices=sorted(AGENTS), default="both")
    parser.add_argument(
        "--after",
        metavar="REV",
        help="build azprov from this commit instead of the working tree (uncommitted"
        " files included)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    return args


def build(agent: str, directory: Path, azprov_commit: Optional[str]) -> BootFiles:
    directory.mkdir()
    if agent == AZPROV:
        deb = package_of(azprov_commit, directory.parent)
        return build_image(directory, deb, install_bench_plumbing)
    return build_cloud_init_image(directory)


def login_key(work: Path) -> Path:
    key = work / "customer_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "customer@bench", "-f", str(key)],
        check=True,
    )
    return key


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    agents = AGENTS[args.agent]
    began = time.monotonic()
    outcomes: dict[str, list[Outcome]] = {agent: [] for agent in agents}
    with tempfile.TemporaryDirectory(prefix="azprov-pps-bench-") as tmp:
        work = Path(tmp)
        key = login_key(work)
        commit = commit_of(args.after) if args.after else None
        images = {agent: build(agent, work / agent, commit) for agent in agents}
        for run in range(args.runs):
            for agent in agents:  # interleaved: the machine's drift hits both alike
                directory = work / agent
                disk = images[agent].copy_disk(directory / f"run{run}.img")
                name = f"{agent}-run{run}"
                outcome = run_pool_vm(agent, images[agent], disk, directory, key, name)
                disk.unlink()
                outcomes[agent].append(outcome)
                for line in describe(outcome, run):
                    print(line, flush=True)
                if args.keep_logs is not None:
                    keep(outcome, directory, name, args.keep_logs)
    print(f"\n({sum(map(len, outcomes.values()))} boots in {time.monotonic() - began:.0f} s)\n")
    for line in summary(outcomes):
        print(line)


def keep(outcome: Outcome, directory: Path, name: str, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for suffix in ("console.log", "probe.log", "qemu.log"):
        source = directory / f"{name}.{suffix}"
        if source.exists():
            shutil.copy2(source, into / source.name)
    (into / f"{name}.fabric.log").write_text("\n".join(outcome.transcript) + "\n")


def _s(seconds: Optional[float]) -> str:
    return f"{seconds:7.2f}" if seconds is not None else "      -"


def describe(outcome: Outcome, run: int) -> list[str]:
    """One boot's marks relative to qemu's start, and what went wrong."""
    said = f"  {outcome.agent} run {run + 1}:"
    login = outcome.login

    def at(mark: Optional[float]) -> str:
        return f"{mark - outcome.started:.2f}" if mark is not None else "-"

    waited = (
        outcome.served - outcome.handed_over
        if outcome.served is not None and outcome.handed_over is not None
        else None
    )
    lines = [
        f"{said} from qemu start: pool Ready {at(outcome.pool_ready)} s, hand-over"
        f" {at(outcome.handed_over)} s, served {at(outcome.served)} s, sshd answers"
        f" {at(login.banner_at)} s, final Ready {at(outcome.final_ready)} s, login-ready"
        f" {at(login.login_ready)} s (its connection opened {at(login.login_asked)} s, its ssh"
        f" {at(login.login_started)}-{at(login.login_done)} s,"
        f" {login.attempts} ssh run(s), {login.rounds} connection(s)); in the guest: sshd listening"
        f" {at(outcome.sshd_listening)} s",
        f"{said} hand-over -> served {_s(waited)} s;"
        f" served -> login-ready {_s(outcome.since_served(login.login_ready))} s,"
        f" -> final Ready {_s(outcome.since_served(outcome.final_ready))} s",
    ]
    version = outcome.probe.get("cloud_init_version")
    if version:
        lines.append(f"{said} cloud-init {version}")
    lines += [f"{said} {problem}" for problem in outcome.problems]
    lines += [f"{said} ssh: {error}" for error in login.errors[-3:]]
    return lines


def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summary(outcomes: dict[str, list[Outcome]]) -> list[str]:
    """The table: per agent, medians of served -> login-ready, -> final Ready, and their gap;
    the ratio azprov / cloud-init for login and the goals."""
    runs = max(len(boots) for boots in outcomes.values())
    lines = [
        "Running pool VM handed over (emulated Debian 12, TCG, same image recipe, same run;"
        f" median of {runs} boot(s), seconds)",
        f"  {'agent':<12} {'served->login-ready':>20} {'served->final Ready':>20}"
        f" {'Ready - login-ready':>20} {'served->sshd listening':>23}",
    ]
    medians: dict[str, dict[str, Optional[float]]] = {}
    for agent, boots in outcomes.items():
        login = _median([b.since_served(b.login.login_ready) for b in boots])
        ready = _median([b.since_served(b.final_ready) for b in boots])
        gap = _median(
            [
                b.final_ready - b.login.login_ready
                if b.final_ready is not None and b.login.login_ready is not None
                else None
                for b in boots
            ]
        )
        listening = _median([b.since_served(b.sshd_listening) for b in boots])
        medians[agent] = {"login": login, "ready": ready, "gap": gap}
        lines.append(
            f"  {agent:<12} {_s(login):>20} {_s(ready):>20} {_s(gap):>20} {_s(listening):>23}"
        )
    if AZPROV in medians and CLOUD_INIT in medians:
        ours, theirs = medians[AZPROV]["login"], medians[CLOUD_INIT]["login"]
        if ours is not None and theirs:
            ratio = ours / theirs
            verdict = "pass" if ratio <= LOGIN_RATIO_GOAL else "miss"
            lines.append(
                f"  ratio azprov / cloud-init, served -> login-ready: {ratio:.2f}"
                f"  (goal <= {LOGIN_RATIO_GOAL:.2f}) {verdict}"
            )
        else:
            lines.append("  ratio azprov / cloud-init: not measured (a login is missing)")
    gap = medians.get(AZPROV, {}).get("gap")
    if gap is not None:
        verdict = "pass" if abs(gap) <= READY_AFTER_LOGIN_GOAL else "miss"
        lines.append(
            f"  azprov final Ready - its login-ready: {gap:+.2f} s"
            f"  (goal within {READY_AFTER_LOGIN_GOAL:.1f} s) {verdict}"
        )
    return lines


if __name__ == "__main__":
    main()
