"""Pre-provisioned VM pools (azure-fabric.md §7) in real Debian 12 boots.

One image with the freshly built .deb and a watcher (guest-pool/: a unit started
before azprov's that writes every change to users, homes, host names, authorized
and host keys, azprov's state files, NICs and leases, with the guest's monotonic
time, to ttyS2). Three pool VMs (pool_scenarios.py): Running (link down and up),
Savable (NIC unplugged, another plugged in) and OS disk (power button, then a
second boot with the customer's media). Each must report Ready twice (the pool's
incarnation, then the customer's), hold nothing of any identity while in the pool,
create the customer's only once reprovisiondata was served, never the placeholder's,
and let the customer in over SSH with their key.

The watcher's times are on the host's clock through the probe's clock samples
(Boot.guest_to_host); a change is seen at most one look (0.1 s) after it happened,
and the fabric keeps reprovisiondata at 404 for a few polls after its IMDS already
names the customer, so taking the customer's identity from anywhere but
reprovisiondata shows up seconds early.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
import warnings
from pathlib import Path
from typing import Optional

import pytest

from azprov.simulator import Request, SimulatedFabric
from tests.e2e.image import BootFiles, build_image, systemctl
from tests.e2e.pool_scenarios import (
    CUSTOMER_HOST,
    CUSTOMER_USER,
    NEW_MAC,
    OS_DISK,
    POOL_HOST,
    POOL_INCARNATION,
    POOL_USER,
    RUNNING,
    SAVABLE,
    PoolRun,
    run_pool,
)
from tests.e2e.test_boot import PROVISIONING, before_sshd
from tests.e2e.tools import built_package
from tests.e2e.vm import Boot, GuestPanicked
from tests.e2e.watch import Timeline, parse_watch

GUEST_FILES = Path(__file__).resolve().parent / "guest-pool"
KINDS = [RUNNING, SAVABLE, OS_DISK]
IMAGE_HOSTNAME = "debian-image"  # image.py's generalized image
# What makes up an identity in the guest, as the watcher names it.
IDENTITY = ("users", "homes", "hostname", "etc_hostname", "authorized_keys", "host_keys")
CUSTOMER_KEYS = f"/home/{CUSTOMER_USER}/.ssh/authorized_keys"


def _customize(tree: Path) -> None:
    for source in sorted(GUEST_FILES.rglob("*")):
        if source.is_file():
            target = tree / source.relative_to(GUEST_FILES)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    systemctl(tree, "enable", "e2e-pool-watch.service")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-pool")


@pytest.fixture(scope="module")
def image(workdir: Path) -> BootFiles:
    return build_image(workdir, built_package("deb"), _customize)


@pytest.fixture(scope="module")
def customer_key(workdir: Path) -> Path:
    key = workdir / "customer_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "customer@host", "-f", str(key)],
        check=True,
    )
    return key


class PoolRuns:
    """Each kind's pool VM, booted on first use and kept for the module (booted again,
    once, after the TCG int3 race, vm.py: emulation's fault, not azprov's)."""

    def __init__(self, image: BootFiles, workdir: Path, key: Path) -> None:
        self.image, self.workdir, self.key = image, workdir, key
        self.runs: dict[str, PoolRun] = {}
        self.failures: dict[str, str] = {}

    def get(self, kind: str) -> PoolRun:
        if kind in self.failures:  # each test of it says so, without booting it again
            raise AssertionError(f"the {kind} pool VM failed:\n{self.failures[kind]}")
        if kind not in self.runs:
            try:
                self.runs[kind] = self._run(kind)
            except AssertionError as failure:
                self.failures[kind] = str(failure)
                raise
        return self.runs[kind]

    def _run(self, kind: str) -> PoolRun:
        try:
            return run_pool(self.image, self.workdir, kind, self.key)
        except GuestPanicked as crash:
            if not crash.emulation_race:
                raise
            warnings.warn(f"{crash}\n(the TCG int3 race: it ran again)", stacklevel=1)
            again = self.workdir / f"again-{kind}"
            again.mkdir()
            return run_pool(self.image, again, kind, self.key)


@pytest.fixture(scope="module")
def pool_runs(image: BootFiles, workdir: Path, customer_key: Path) -> PoolRuns:
    return PoolRuns(image, workdir, customer_key)


@pytest.fixture(
    params=KINDS,
    ids=["running", "savable", "os-disk"],
)
def run(request: pytest.FixtureRequest, pool_runs: PoolRuns) -> PoolRun:
    return pool_runs.get(request.param)


def handed_over_data_at(run: PoolRun) -> float:
    """When the customer's data reached the VM: reprovisiondata's first 200, or for an OS
    disk (whose second boot reads the media) the hand-over, before that boot."""
    if run.kind == OS_DISK:
        assert run.pool.handed_over_at is not None
        return run.pool.handed_over_at
    served = run.served_at()
    assert served is not None, run.describe()
    return served


def _since(start: Optional[float], end: Optional[float]) -> str:
    return f"{end - start:6.2f} s" if start is not None and end is not None else "   n/a"


def timings(run: PoolRun) -> str:
    """What the pool VM took, on the host's clock (printed, not asserted)."""
    boot, marks = run.last, run.marks
    data = handed_over_data_at(run)
    readies = run.readies()
    final = readies[-1].at if len(readies) > 1 else None
    sshd = boot.unit_time("ssh.service", "ActiveEnterTimestampMonotonic")
    unit = boot.unit_time(PROVISIONING, "InactiveExitTimestampMonotonic")
    what = "hand-over (boot 2 starts)" if run.kind == OS_DISK else "reprovisiondata served"
    lines = [
        f"{run.kind} pool: qemu start -> pool's Ready"
        f" {_since(run.boots[0].started, marks.get('pool_ready'))}",
        f"  {what} -> final Ready {_since(data, final)}; -> sshd active {_since(data, sshd)}",
        f"  last boot: unit start -> final Ready {_since(unit, final)};"
        f" -> sshd active {_since(unit, sshd)}",
    ]
    if run.kind != OS_DISK:
        lines.append(
            f"  hand-over -> reprovisiondata served {_since(marks['handed_over'], data)}"
            " (IMDS already the customer's)"
        )
    if run.kind == RUNNING:
        polls = [r.at for r in run.reprovision_requests() if r.at > marks["link_up"]]
        first_poll = _since(marks["link_up"], min(polls, default=None))
        lines.append(f"  link up -> first reprovisiondata poll {first_poll}")
    if run.kind == SAVABLE:
        added, timeline = marks["nic_added"], run.timelines[0]
        lease = timeline.first("leases", lambda c: c.value != "-" and timeline.at(c) > added)
        polls = [r.at for r in run.reprovision_requests() if r.at > added]
        lines += [
            f"  device_del -> DEVICE_DELETED {_since(marks['nic_unplugged'], marks['nic_deleted'])}",
            f"  device_add -> lease {_since(added, timeline.at(lease) if lease else None)};"
            f" -> first reprovisiondata poll {_since(added, min(polls, default=None))}",
        ]
    if run.kind == OS_DISK:
        off = _since(marks["power_button"], marks["powered_off"])
        lines.append(f"  power button -> qemu exit {off}")
    return "\n".join(lines)


def customer_identity_seen(timeline: Timeline, data_at: float) -> dict[str, Optional[float]]:
    """Each part of the customer's identity: seconds from `data_at` to the watcher's first
    sight of it (negative: it was there before; None: never seen)."""
    firsts = {
        "user": timeline.first("users", lambda c: CUSTOMER_USER in c.items()),
        "home": timeline.first("homes", lambda c: CUSTOMER_USER in c.items()),
        "hostname": timeline.first("hostname", lambda c: c.value == CUSTOMER_HOST),
        "/etc/hostname": timeline.first("etc_hostname", lambda c: c.value == CUSTOMER_HOST),
        "authorized key": timeline.first(
            "authorized_keys", lambda c: any(i.startswith(f"{CUSTOMER_KEYS}:") for i in c.items())
        ),
    }
    return {name: (timeline.at(c) - data_at if c else None) for name, c in firsts.items()}


def test_pool_vm_reports_ready_in_the_pool_then_for_the_customer(run: PoolRun) -> None:
    print("\n" + timings(run))
    context = run.describe()
    reports = run.readies()
    assert [(r.state, r.incarnation) for r in reports] == [
        ("Ready", str(POOL_INCARNATION)),
        ("Ready", str(POOL_INCARNATION + 1)),
    ], context
    spec = run.fabric.spec  # the customer's now, in the pool's container and role
    for report in reports:
        assert (report.container_id, report.instance_id) == (spec.container_id, spec.instance_id)
    data = handed_over_data_at(run)
    assert reports[0].at < data < reports[1].at, context
    # The final Ready after the customer's data was read again from IMDS and the goal state.
    imds = [r.at for r in run.fabric.requests_to("imds", "/metadata/instance") if r.at > data]
    goal = [r.at for r in run.fabric.requests_to("wireserver", "/machine/?comp=goalstate")]
    assert imds and min(imds) < reports[1].at, context
    assert any(data < at < reports[1].at for at in goal), context


def test_nothing_of_any_identity_exists_while_in_the_pool(run: PoolRun) -> None:
    """Neither the placeholder's nor the customer's: the guest at the moment the
    customer's data arrived is the generalized image as it booted."""
    context = run.describe()
    first = run.timelines[0]
    at_start = {key: first.values(key)[0].value for key in IDENTITY}
    assert at_start == {
        "users": "-",
        "homes": "-",
        "hostname": IMAGE_HOSTNAME,
        "etc_hostname": IMAGE_HOSTNAME,
        "authorized_keys": "-",
        "host_keys": "-",
    }, context
    # An OS disk's pool boot ended in the pool: all of it was in the pool.
    in_pool = first.final() if run.kind == OS_DISK else first.state_at(handed_over_data_at(run))
    assert {key: in_pool[key] for key in IDENTITY} == at_start, context
    # The placeholder's identity at no time in any boot.
    for timeline in run.timelines:
        for change in timeline.changes:
            assert POOL_USER not in change.value and change.value != POOL_HOST, context


def test_the_customer_s_identity_appears_only_after_their_data_arrived(run: PoolRun) -> None:
    seen = customer_identity_seen(run.timelines[-1], handed_over_data_at(run))
    print(f"\n{run.kind}: seconds from the customer's data to each part of it: {seen}")
    for name, after in seen.items():
        assert after is not None and after > 0, f"{name}: {after}\n{run.describe()}"


def test_the_early_identity_check_sees_a_user_made_before_the_data() -> None:
    """The check above can fail: a user made 1 s before the data arrived (guest clock
    mapped through one clock sample) is seen 1 s early; the rest after it, or never."""
    fabric = SimulatedFabric()
    sample = Request("wireserver", "GET", "/e2e/clock?mono_us=50000000", {}, b"", at=150.0)
    fabric.requests.append(sample)  # guest 50 s is host 150 s
    boot = Boot(fabric, "", {}, {}, started=100.0, seconds=60.0)
    text = f"WATCH 40000000 users=-\nWATCH 44000000 users={CUSTOMER_USER}\n"
    text += f"WATCH 46000000 hostname={CUSTOMER_HOST}\n"
    seen = customer_identity_seen(Timeline(boot, parse_watch(text)), data_at=145.0)
    assert seen["user"] == pytest.approx(-1.0)
    assert seen["hostname"] == pytest.approx(1.0)
    assert seen["authorized key"] is None


def test_the_customer_logs_in_with_their_key_and_sshd_waited_for_it(run: PoolRun) -> None:
    boot, login = run.last, run.login
    context = run.describe()
    assert boot.probe.get("login_status") == "200", context
    assert login.status == 0, context
    assert login.output.split() == [CUSTOMER_USER, CUSTOMER_HOST], context
    # What sshd found when it started: the customer's user and key, no placeholder.
    state = before_sshd(boot)
    assert state.get("hostname") == [CUSTOMER_HOST], context
    users = [line.split(":")[0] for line in state.get("user", [])]
    assert users == [CUSTOMER_USER], context
    public = Path(f"{login.key}.pub").read_text().strip()
    digest = hashlib.sha256(f"{public}\n".encode()).hexdigest()
    assert state.get("authorized_keys") == [f"{CUSTOMER_KEYS} 600 {CUSTOMER_USER} {digest}"], (
        context
    )
    sshd = boot.unit_time("ssh.service", "InactiveExitTimestampMonotonic")
    assert sshd is not None and run.readies()[-1].at <= sshd, context


def test_the_pool_marker_is_gone_and_the_unit_done(run: PoolRun) -> None:
    boot = run.last
    context = run.describe()
    final = run.timelines[-1].final()
    assert "pool.json" not in final["azprov"].split(","), context
    assert "provisioned.json" in final["azprov"].split(","), context
    assert boot.probe.get(f"{PROVISIONING}:Result") == "success", context
    assert boot.probe.get("enabled") == "disabled", context
    journal = boot.sections.get("journal", "")
    assert "Traceback" not in journal and "Traceback" not in boot.console, context


@pytest.mark.parametrize("kind", [RUNNING, SAVABLE])
def test_reprovisiondata_is_asked_as_imds_wants(kind: str, pool_runs: PoolRuns) -> None:
    run = pool_runs.get(kind)
    context = run.describe()
    requests = run.reprovision_requests()
    assert requests and requests[-1].status == 200, context
    ids = [r.headers.get("x-ms-client-request-id", "") for r in requests]
    assert len(set(ids)) == len(ids), context  # a fresh one each time
    assert all(str(uuid.UUID(i)) == i for i in ids), context
    for request in requests:
        assert request.headers.get("metadata") == "true", context
        assert request.query.get("api-version") == ["2019-06-01"], context
    # Asked for only once the VM waited for the customer: after the pool's Ready.
    assert requests[0].at > run.readies()[0].at, context


def test_running_pool_vm_waits_for_the_link_to_bounce(pool_runs: PoolRuns) -> None:
    run = pool_runs.get(RUNNING)
    context = run.describe()
    polls = run.reprovision_requests()
    assert polls and polls[0].at > run.marks["link_up"], context
    # The lease renewed after the bounce, before the polls (the customer's network).
    journal = run.last.sections.get("journal", "")
    renewed = journal.find("renewed the DHCP lease through systemd-networkd")
    assert 0 <= renewed < journal.find("waiting for the customer's data"), context


def test_savable_pool_vm_takes_the_hot_plugged_nic(pool_runs: PoolRuns) -> None:
    run = pool_runs.get(SAVABLE)
    context = run.describe()
    timeline = run.timelines[0]
    nics = [(timeline.at(c), c.items()) for c in timeline.values("nics")]
    gone = [at for at, items in nics if not items]
    assert gone and run.marks["nic_unplugged"] < gone[0], context
    (final,) = nics[-1][1]
    assert final.split("/")[1:] == [NEW_MAC, "up"], context
    polls = run.reprovision_requests()
    assert polls and polls[0].at > run.marks["nic_added"], context


def test_os_disk_pool_vm_stops_quietly_and_provisions_at_its_next_boot(
    pool_runs: PoolRuns,
) -> None:
    run = pool_runs.get(OS_DISK)
    context = run.describe()
    pool_boot, customer_boot = run.boots
    in_pool = [r for r in run.readies() if r.at < run.marks["powered_off"]]
    assert [r.incarnation for r in in_pool] == [str(POOL_INCARNATION)], context
    # Ready without a marker: the next boot is an ordinary first boot.
    for change in run.timelines[0].values("azprov"):
        assert "pool.json" not in change.items(), context
    # Stopped at once by the power button: the unit's wait ends at SIGTERM, quietly.
    assert run.marks["powered_off"] - run.marks["power_button"] < 60, context
    previous = customer_boot.sections.get("pool-previous-boot", "")
    assert "azprov" in previous, context
    for word in ("Traceback", "timed out", "Killing", "SIGKILL"):
        assert word not in previous, context
    assert customer_boot.started > run.marks["handed_over"] > pool_boot.started, context
