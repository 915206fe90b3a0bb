"""Bench: unit start -> Ready acknowledged, azprov vs the seed document's reference unit.

Both boot the same Debian 12 image (the emulated-boot tests' cached rootfs)
in the same run, against the same simulated fabric:
- azprov: the freshly built .deb, its unit with its real defaults;
- reference: the seed document's unit and Python sample (Ready, then
  hostnamectl from IMDS, then self-disable), taken from
  ../shared/seeds/003_*.txt at run time, with only
  `Wants=`/`After=network-online.target` added (as published it runs before
  DHCP is done and fails).

Times are the fabric's arrival time of the Ready POST minus the unit's start
(systemd's InactiveExitTimestampMonotonic), the guest clock mapped to the
host's through the probe's clock samples.

    .venv/bin/python bench/boot_compare.py [--runs N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azprov.simulator import VmSpec  # noqa: E402
from tests.e2e.image import BootFiles, build_image, systemctl  # noqa: E402
from tests.e2e.tools import built_package  # noqa: E402
from tests.e2e.vm import Boot, boot, vm_id_for  # noqa: E402

SEEDS = REPO.parent / "shared" / "seeds"
UNIT = "azure-provisioning.service"
SMBIOS_UUIDS = (
    "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c80",
    "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c81",
    "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c82",
    "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c83",
    "6b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c84",
)


def seed_document() -> str:
    (path,) = sorted(SEEDS.glob("003_*.txt"))
    return path.read_text(encoding="utf-8")


def between(text: str, first: str, last: str) -> str:
    """The lines from the one starting with `first` to the one starting with `last`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(last))
    return "\n".join(lines[start : end + 1]) + "\n"


def install_reference(tree: Path) -> None:
    """The seed's sample and unit, with only the network ordering added."""
    document = seed_document()
    script = between(document, "import http.client", "wireserver_conn.close()")
    unit = between(document, "[Unit]", "WantedBy=multi-user.target")
    unit = unit.replace(
        "[Unit]\n", "[Unit]\nWants=network-online.target\nAfter=network-online.target\n", 1
    )
    (tree / "usr/local/azure-provisioning.py").write_text(script)
    (tree / "etc/systemd/system" / UNIT).write_text(unit)
    systemctl(tree, "enable", UNIT)


def ready_seconds(result: Boot) -> tuple[float, Optional[float]]:
    """(unit start -> Ready acknowledged, unit start -> sshd started)."""
    reports = [r for r in result.fabric.health_reports if r.state == "Ready"]
    if not reports:
        raise SystemExit("no Ready was posted:\n" + result.describe())
    started = result.unit_time(UNIT, "InactiveExitTimestampMonotonic")
    if started is None:
        raise SystemExit("the unit never started:\n" + result.describe())
    sshd = result.unit_time("ssh.service", "ActiveEnterTimestampMonotonic")
    return reports[0].at - started, (sshd - started) if sshd else None


def first_log_seconds(result: Boot) -> Optional[float]:
    """Unit start -> the agent's first journal line: interpreter start-up and imports."""
    started = result.probe.get(f"{UNIT}:InactiveExitTimestampMonotonic", "")
    for line in result.sections.get("journal", "").splitlines():
        match = re.match(r"^\[\s*(\d+\.\d+)\] \S+ (?!systemd\[)[^:]+: ", line)
        if match and started.isdigit():
            return float(match.group(1)) - int(started) / 1e6
    return None


def azprov_phases(result: Boot) -> str:
    """azprov's own account of its run (the last journal line), for where the time went."""
    for line in reversed(result.sections.get("journal", "").splitlines()):
        if " provisioned: " in line:
            return line.split(" provisioned: ", 1)[1]
    return ""


def spec_for(smbios_uuid: str, index: int) -> VmSpec:
    name = f"bench-{index}"
    return VmSpec(
        vm_id=vm_id_for(smbios_uuid), name=name, computer_name=name, role_name=f"_{name}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="boots per agent (default 1)")
    args = parser.parse_args()
    runs = max(1, min(args.runs, len(SMBIOS_UUIDS)))

    with tempfile.TemporaryDirectory(prefix="azprov-bench-") as tmp:
        work = Path(tmp)
        (work / "azprov").mkdir()
        (work / "reference").mkdir()
        images: dict[str, BootFiles] = {
            "azprov": build_image(work / "azprov", built_package("deb")),
            "reference": build_image(work / "reference", None, install_reference),
        }
        figures: dict[str, list[tuple[float, Optional[float]]]] = {name: [] for name in images}
        for run in range(runs):
            for name, files in images.items():  # interleaved: drift hits both alike
                smbios = SMBIOS_UUIDS[run]
                disk = files.copy_disk(work / name / f"run{run}.img")
                result = boot(
                    files, disk, spec_for(smbios, run), smbios, work / name, name=f"{name}{run}"
                )
                figures[name].append(ready_seconds(result))
                # Only azprov's log is unbuffered (stderr); the sample's print()s
                # reach the journal in one block when it exits.
                first_log = first_log_seconds(result) if name == "azprov" else None
                if first_log is not None:
                    print(
                        f"  {name} run {run + 1}: unit start -> first log line {first_log:.2f} s"
                    )
                if azprov_phases(result):
                    print(f"  {name} run {run + 1}: phases: {azprov_phases(result)}")
                disk.unlink()
                print(
                    f"  {name} run {run + 1}: unit start -> Ready {figures[name][-1][0]:.2f} s",
                    flush=True,
                )

    print()
    print("unit start -> Ready acknowledged (emulated Debian 12, TCG, same image, same run)")
    medians = {}
    for name, values in figures.items():
        ready = [r for r, _ in values]
        medians[name] = statistics.median(ready)
        sshd = [s for _, s in values if s is not None]
        extra = f"; sshd started {statistics.median(sshd):.2f} s" if sshd else ""
        shown = ", ".join(f"{r:.2f}" for r in ready)
        print(f"  {name:<10} median {medians[name]:6.2f} s  ({shown}){extra}")
    ratio = medians["azprov"] / medians["reference"]
    print(f"  ratio azprov / reference: {ratio:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
