"""Attacks on the pre-provisioned pool support through the network side: the Savable
pool's Ready report racing the NIC's removal, and network interface names an image's
udev rules chose (`ip -o route get` and `networkctl list` output about them).

Real kernel objects throughout: tap devices in a private network namespace (a child
started by `unshare -n`, the helpers of tests/host/test_netlink.py), the real `ip`,
the real systemd-networkd on a private D-Bus bus (tests/host/test_nic.py's sandbox),
and the simulated fabric over loopback HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from azprov.errors import FabricTimeout
from azprov.fabric.http import FabricHttp
from azprov.fabric.retry import Deadline
from azprov.fabric.wireserver import Health, WireServer
from azprov.simulator import Answer, SimulatedFabric
from tests.conftest import REPO, needs_root
from tests.host.test_netlink import _netns_missing, scenario
from tests.host.test_nic import NETWORK_FILE, networkd_answers, networkd_here, outcome, wait_for

HEALTH = "/machine?comp=health"
netns_here = pytest.mark.skipif(bool(_netns_missing()), reason=_netns_missing() or "-")


# --- the Savable pool's Ready and the NIC's removal -----------------------------------

# In the child: the simulated fabric on the namespace's loopback, a tap t0 as the NIC.
READY_OR_UNPLUGGED = """
    from azprov.fabric.client import Fabric
    from azprov.fabric.http import FabricHttp
    from azprov.fabric.wireserver import WireServer
    from azprov.pool import ready_or_unplugged
    from azprov.run import RunRecord
    from azprov.simulator import Answer, SimulatedFabric
    ip("link", "set", "lo", "up")
    tap("t0")
    with SimulatedFabric() as fabric:
        http = FabricHttp()
        wireserver = WireServer(http, fabric.wireserver_endpoint, 30)
        goal_state = wireserver.goal_state()
        fabric.wireserver.script([ANSWER], "/machine?comp=health")
        with LinkWatcher() as links:
            started = time.monotonic()
            later(REMOVED_AT, lambda: ip("link", "del", "t0"))
            ready_or_unplugged(Fabric(http, wireserver), links, "t0", goal_state, RunRecord())
            returned = time.monotonic() - started
        time.sleep(3)  # past any retry that was still to come
        sent = [(r.method, r.path, r.at - started) for r in fabric.requests_to("wireserver")]
        result(returned=returned, sent=[s for s in sent if s[2] >= 0])
"""


@netns_here
@pytest.mark.parametrize(
    "answer",
    [
        # The first try is refused for now: the retry is due after the NIC has gone.
        'Answer(503, b"busy", {"Retry-After": "2"})',
        # The goal state moved while the NIC went: the answer (410) comes after it.
        "Answer(410, delay=1.0)",
    ],
    ids=["retry-after", "gone-then-refetch"],
)
def test_no_request_leaves_after_the_nic_is_removed(answer: str) -> None:
    """Savable: the NIC's removal is taken as the WireServer's answer to Ready; the
    report's retries end then, so no late try can post a second Ready (on the NIC the
    platform hot-attaches next)."""
    body = READY_OR_UNPLUGGED.replace("ANSWER", answer).replace("REMOVED_AT", "0.5")
    found, log = scenario(body, seconds=60)
    returned = float(found["returned"])
    assert 0.5 <= returned < 2, log
    late = [sent for sent in found["sent"] if sent[2] > returned]
    assert late == [], f"sent after the NIC was gone at {returned:.2f} s: {late}\n{log}"
    assert "t0 was removed before the WireServer answered Ready" in log


@netns_here
def test_waiting_for_the_answer_or_the_removal_is_logged_once() -> None:
    """The wait is a loop of short waits: each must not log a line (five a second for
    as long as a slow WireServer takes, minutes, in the journal)."""
    slow = 'Answer(200, b"", delay=2.5)'
    body = READY_OR_UNPLUGGED.replace("ANSWER", slow).replace("REMOVED_AT", "2.0")
    _, log = scenario(body, seconds=60)
    assert log.count("to be removed") <= 1, log


SIGTERM_IN_FLIGHT = """
    from azprov.errors import Terminated
    from azprov.fabric.client import Fabric
    from azprov.fabric.http import FabricHttp
    from azprov.fabric.wireserver import WireServer
    from azprov.pool import ready_or_unplugged
    from azprov.run import RunRecord, stop_on_sigterm
    from azprov.simulator import Answer, SimulatedFabric
    ip("link", "set", "lo", "up")
    tap("t0")
    fabric = SimulatedFabric().start()  # never stopped: that would wait for its answer
    http = FabricHttp()
    wireserver = WireServer(http, fabric.wireserver_endpoint, 30)
    goal_state = wireserver.goal_state()
    fabric.wireserver.script([Answer(200, b"", delay=30)], "/machine?comp=health")
    stop = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    stop.daemon = True
    started = time.monotonic()
    stop.start()
    with stop_on_sigterm(), LinkWatcher() as links:
        try:
            ready_or_unplugged(Fabric(http, wireserver), links, "t0", goal_state, RunRecord())
        except Terminated:
            result(stopped_after=time.monotonic() - started)
"""


@netns_here
def test_sigterm_while_the_ready_is_in_flight_ends_the_wait_and_the_process() -> None:
    """The report runs in a daemon thread: a try held up by the WireServer (or by a
    NIC gone under it) keeps neither the wait nor the process's exit waiting."""
    started = time.monotonic()
    found, log = scenario(SIGTERM_IN_FLIGHT, seconds=25)
    assert float(found["stopped_after"]) < 2, log
    assert time.monotonic() - started < 15, log  # the exit did not wait for the answer


def test_a_cancelled_deadline_stops_the_calls_retries(fabric: SimulatedFabric) -> None:
    """Deadline.cancel() while the call sleeps before its next try: it gives up there,
    and a call that starts with a cancelled deadline sends nothing."""
    wireserver = WireServer(FabricHttp(), fabric.wireserver_endpoint, 30)
    goal_state = wireserver.goal_state()
    fabric.wireserver.script([Answer(503, b"busy", {"Retry-After": "1"})], HEALTH)
    deadline = Deadline(30)
    raised: list[BaseException] = []

    def post() -> None:
        try:
            wireserver.report_health(Health.ready(), goal_state, deadline)
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    wait_for(lambda: bool(fabric.requests_to("wireserver", HEALTH)), seconds=5)
    deadline.cancel()
    thread.join(timeout=5)
    time.sleep(1.2)
    assert [r.method for r in fabric.requests_to("wireserver", HEALTH)] == ["POST"]
    assert len(raised) == 1 and isinstance(raised[0], FabricTimeout), raised
    before = len(fabric.requests)
    with pytest.raises(FabricTimeout, match="cancelled"):
        wireserver.goal_state(deadline)
    assert len(fabric.requests) == before


# --- interface names in `ip -o route get` ----------------------------------------------

ROUTES = """
    import ctypes
    from azprov.host import nic
    from azprov.host.root import TargetRoot

    def persistent_tap(name):  # any name the kernel takes, as a udev rule may give it
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))
        fcntl.ioctl(fd, 0x400454CB, 1)  # TUNSETPERSIST
        os.close(fd)

    ip("link", "set", "lo", "up")
    for name, net in (("dev", "10.8.0"), ("a\\\\b", "10.9.0"), ("src", "10.7.0")):
        persistent_tap(name)
        ip("link", "set", "dev", name, "up")
        ip("addr", "add", f"{net}.2/24", "dev", name)
    root = TargetRoot("/")
    found = {}
    for address in ("10.8.0.5", "10.9.0.5", "10.7.0.5"):
        shown = subprocess.run(["ip", "-o", "route", "get", address], capture_output=True)
        try:
            found[address] = [nic.route_interface(root, address), shown.stdout.decode()]
        except Exception as error:
            found[address] = [f"{type(error).__name__}: {error}", shown.stdout.decode()]
    result(**found)
"""


@needs_root
@netns_here
def test_the_route_names_the_nic_whatever_udev_named_it() -> None:
    """A NIC named `dev` made the answer hold `dev` twice ("not one device": a pool VM
    failed before its Ready, or after it while waiting for a hot-attached NIC's route);
    one named `a\\b` was read as `a` (the text after a backslash was taken for the
    line iproute2 -o joins), so a Savable pool VM watched a NIC that does not exist."""
    found, _ = scenario(ROUTES, seconds=60)
    assert found["10.8.0.5"][0] == "dev", found
    assert found["10.9.0.5"][0] == "a\\b", found
    assert found["10.7.0.5"][0] == "src", found


# --- interface names in `networkctl list` ----------------------------------------------

# Names the kernel takes (no '/', ':', NUL or ASCII white space) that hold white space
# to Python: U+3000 IDEOGRAPHIC SPACE, U+0085 NEXT LINE, U+2028 LINE SEPARATOR.
ODD_NAMES = ("x\u3000y", "z\u0085w", "l\u2028m")


def odd_names_sandbox() -> None:
    """The child's side (`unshare -n -m --propagation private`): the real networkd on a
    private bus with a .network file for managed0, beside taps with ODD_NAMES; prints
    what bringing managed0 up with DHCP came to, as JSON."""

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=10)

    def die_with_this_process() -> None:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    from azprov.host import nic
    from azprov.host.root import TargetRoot

    run("mount", "--make-rprivate", "/")
    run("mount", "-t", "tmpfs", "tmpfs", "/run")
    run("mount", "-t", "sysfs", "-o", "ro", "sysfs", "/sys")
    run("ip", "link", "set", "lo", "up")
    for name in (*ODD_NAMES, "managed0"):  # listed before it (a hot-attached NIC comes last)
        run("ip", "tuntap", "add", name, "mode", "tap")
    Path("/run/systemd/network").mkdir(parents=True)
    Path("/run/systemd/network/50-managed0.network").write_text(NETWORK_FILE)
    Path("/run/dbus").mkdir()
    bus = ["dbus-daemon", "--system", "--nofork", "--nopidfile"]
    started = [subprocess.Popen(bus, preexec_fn=die_with_this_process)]
    try:
        wait_for(lambda: Path("/run/dbus/system_bus_socket").exists())
        networkd = "/lib/systemd/systemd-networkd"
        started.append(subprocess.Popen([networkd], preexec_fn=die_with_this_process))
        wait_for(networkd_answers)
        listing = subprocess.run(
            ["networkctl", "list", "--no-legend", "--no-pager"], capture_output=True, check=True
        ).stdout.decode("utf-8", "replace")
        root = TargetRoot("/")
        done = outcome(nic.bring_up_with_dhcp, root, "managed0", manager=nic.NETWORKD, settle=1.0)
        print(json.dumps({"listing": listing, "managed0": done}))
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=10)


@needs_root
@networkd_here
def test_a_nic_with_an_odd_name_does_not_stop_networkd_bringing_up_another() -> None:
    """networkctl prints names as they are; one that holds a Unicode space split its row
    into six columns, and the whole listing was refused, for every NIC: a Savable pool
    VM could never take its hot-attached NIC while such a link existed."""
    code = "from tests.hostile.test_pool_network_attacks import odd_names_sandbox as s; s()"
    done = subprocess.run(
        ["unshare", "-n", "-m", "--propagation", "private", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert all(name in results["listing"] for name in ODD_NAMES), results["listing"]
    assert results["managed0"] == {
        "done": "brought managed0 up; systemd-networkd is asking for a DHCP lease (configuring)"
    }, results
