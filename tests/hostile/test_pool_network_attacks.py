"""Attacks on the pre-provisioned pool support through the network side: the Savable
pool's Ready report racing the NIC's removal, and network interface names an image's
udev rules chose (`ip -o route get` and `networkctl list` output about them).

Real kernel objects throughout: tap devices in a private network namespace (a child
started by `unshare -n`, the helpers of tests/host/test_netlink.py), the real `ip`,
the real systemd-networkd on a private D-Bus bus (tests/host/test_nic.py's sandbox),
and the simulated fabric over loopback HTTP.
"""

from __future__ import annotations

import threading
import time

import pytest

from azprov.errors import FabricTimeout
from azprov.fabric.http import FabricHttp
from azprov.fabric.retry import Deadline
from azprov.fabric.wireserver import Health, WireServer
from azprov.simulator import Answer, SimulatedFabric
from tests.conftest import needs_root
from tests.host.test_netlink import _netns_missing, scenario
from tests.host.test_nic import wait_for

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
    assert "t0 was removed before the WireServer answered" in log


@netns_here
def test_waiting_for_the_answer_or_the_removal_is_logged_once() -> None:
    """The wait is a loop of short waits: each must not log a line (five a second for
    as long as a slow WireServer takes, minutes, in the journal)."""
    slow = 'Answer(200, b"", delay=2.5)'
    body = READY_OR_UNPLUGGED.replace("ANSWER", slow).replace("REMOVED_AT", "2.0")
    _, log = scenario(body, seconds=60)
    assert log.count("to be removed") <= 1, log


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
