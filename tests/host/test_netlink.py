"""LinkWatcher against the real kernel: tap devices in a private network namespace.

Each scenario runs in a child started by `unshare -n`, so the test process never
changes namespace and no link of the machine is touched. A tap's carrier is on
while a process holds it open (TUNSETIFF on /dev/net/tun) and off once it is
closed: that is the bounce a Running pool's NIC makes at the hand-over.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from azprov.host.netlink import LinkWatcher

REPO = Path(__file__).resolve().parents[2]


def _netns_missing() -> str:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun for tap devices"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare -n fails here: {probe.stderr.decode(errors='replace').strip()}"
    return ""


pytestmark = pytest.mark.skipif(bool(_netns_missing()), reason=_netns_missing() or "-")

# Helpers in the child: every link change is made with ip(8) and /dev/net/tun, and
# each state is awaited through ip(8) too, not through the code under test.
PRELUDE = r'''
import fcntl, json, logging, os, signal, struct, subprocess, sys, threading, time
from azprov.host.netlink import LinkWaitTimeout, LinkWatcher, list_links
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")

def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)

def tap(name):
    ip("tuntap", "add", name, "mode", "tap")
    ip("link", "set", name, "up")

def carrier_on(name):
    """Hold the tap open: its carrier comes on (closing the fd turns it off)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))
    return fd

def settle(name, state):
    """Wait until ip(8) shows link `name` in operational `state` (UP or DOWN)."""
    for _ in range(200):
        shown = subprocess.run(["ip", "-o", "link", "show", name], capture_output=True,
                               text=True).stdout
        if f" state {state} " in shown:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {state}: {shown}")

def later(seconds, action):
    threading.Timer(seconds, action).start()

def result(**values):
    print(json.dumps(values))
'''


def scenario(body: str, seconds: float = 60) -> tuple[dict[str, Any], str]:
    """Run `body` (after PRELUDE) in a fresh network namespace: its last printed
    JSON line and its log."""
    code = PRELUDE + textwrap.dedent(body)
    try:
        done = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the scenario did not finish within {seconds:g} s") from None
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


# `ip link set down/up` (administrative) and the carrier both change the operational state.
BOUNCES = {
    "carrier": "os.close(fd); settle('t0', 'DOWN'); fd = carrier_on('t0'); settle('t0', 'UP')",
    "admin": "ip('link', 'set', 't0', 'down'); settle('t0', 'DOWN'); "
    "ip('link', 'set', 't0', 'up'); settle('t0', 'UP')",
}


@pytest.mark.parametrize("how", sorted(BOUNCES))
def test_a_bounce_during_the_wait_is_seen(how: str) -> None:
    found, log = scenario(f"""
        tap("t0"); fd = carrier_on("t0"); settle("t0", "UP")
        def bounce():
            global fd
            {BOUNCES[how]}
        with LinkWatcher() as watcher:
            started = time.monotonic()
            later(0.3, bounce)
            watcher.wait_down_then_up("t0", timeout=20)
            result(waited=time.monotonic() - started)
    """)
    assert 0.3 <= float(found["waited"]) < 20
    assert "Waiting for link t0 to go down and up again (up to 20 s)." in log
    assert "Saw link t0 go down" in log and "Saw link t0 come up again" in log


@pytest.mark.parametrize("how", sorted(BOUNCES))
def test_a_bounce_between_opening_and_waiting_counts(how: str) -> None:
    found, _ = scenario(f"""
        tap("t0"); fd = carrier_on("t0"); settle("t0", "UP")
        with LinkWatcher() as watcher:
            {BOUNCES[how]}
            started = time.monotonic()
            watcher.wait_down_then_up("t0", timeout=10)
            result(waited=time.monotonic() - started)
    """)
    assert float(found["waited"]) < 2  # queued: no waiting


def test_a_bounce_before_the_watcher_opened_does_not_count_and_the_wait_times_out() -> None:
    found, log = scenario("""
        tap("t0"); fd = carrier_on("t0"); settle("t0", "UP")
        os.close(fd); settle("t0", "DOWN"); fd = carrier_on("t0"); settle("t0", "UP")
        with LinkWatcher() as watcher:
            ip("link", "set", "t0", "mtu", "1400")  # a change that is no bounce
            started = time.monotonic()
            try:
                watcher.wait_down_then_up("t0", timeout=0.5)
            except LinkWaitTimeout as error:
                result(error=str(error), reason=error.reason, waited=time.monotonic() - started)
    """)
    assert found["error"] == "timed out after 0.5 s waiting for link t0 to go down and up again"
    assert found["reason"] == "link_wait_timeout"
    assert 0.5 <= float(found["waited"]) < 3
    assert "Saw link t0" not in log


def test_a_bounce_of_another_link_does_not_count() -> None:
    found, _ = scenario("""
        tap("t0"); tap("t1"); fd = carrier_on("t1"); settle("t1", "UP")
        with LinkWatcher() as watcher:
            os.close(fd); settle("t1", "DOWN"); fd = carrier_on("t1"); settle("t1", "UP")
            try:
                watcher.wait_down_then_up("t0", timeout=0.5)
                result(timed_out=False)
            except LinkWaitTimeout:
                result(timed_out=True)
    """)
    assert found == {"timed_out": True}


def test_removal_is_seen_whether_it_comes_before_or_during_the_wait() -> None:
    found, log = scenario("""
        tap("t0"); tap("t1"); tap("t2")
        with LinkWatcher() as watcher:
            ip("link", "del", "t1")  # queued before the wait
            before = time.monotonic()
            watcher.wait_removed("t1", timeout=5)
            queued = time.monotonic() - before
            later(0.3, lambda: ip("link", "del", "t0"))
            before = time.monotonic()
            watcher.wait_removed("t0", timeout=20)
            result(queued=queued, waited=time.monotonic() - before)
    """)
    assert float(found["queued"]) < 2
    assert 0.3 <= float(found["waited"]) < 20
    assert "Saw link t0 removed" in log
    assert "Waiting for link t0 to be removed (up to 20 s)." in log


def test_removal_of_another_link_does_not_count_and_a_gone_link_returns_at_once() -> None:
    found, log = scenario("""
        tap("t0"); tap("t1")
        with LinkWatcher() as watcher:
            ip("link", "del", "t1")
            try:
                watcher.wait_removed("t0", timeout=0.5)
                timed_out = False
            except LinkWaitTimeout:
                timed_out = True
            watcher.wait_removed("never-there", timeout=0.5)
            result(timed_out=timed_out)
    """)
    assert found == {"timed_out": True}
    assert "Link never-there is gone already." in log


def test_a_new_link_is_returned_and_a_known_one_is_not() -> None:
    found, log = scenario("""
        tap("t0")
        with LinkWatcher() as watcher:
            ip("link", "set", "lo", "up")  # loopback: skipped, known or not
            ip("tuntap", "add", "known1", "mode", "tap")
            ip("link", "set", "t0", "mtu", "1400")
            ip("tuntap", "add", "hot1", "mode", "tap")
            first = watcher.wait_new_link({"t0", "known1"}, timeout=5)
            later(0.3, lambda: ip("tuntap", "add", "hot2", "mode", "tap"))
            second = watcher.wait_new_link({"t0", "known1", "hot1"}, timeout=20)
            try:
                watcher.wait_new_link({"t0", "known1", "hot1", "hot2"}, timeout=0.5)
                third = "none"
            except LinkWaitTimeout as error:
                third = str(error)
            result(first=first, second=second, third=third)
    """)
    assert found == {
        "first": "hot1",
        "second": "hot2",
        "third": "timed out after 0.5 s waiting for a network link other than "
        "hot1, hot2, known1, t0",
    }
    assert "Saw new link hot1" in log and "Saw new link hot2" in log


# A receive buffer the kernel rounds up to a few KiB: a dozen link messages overflow it.
FLOOD = """
def flood():
    for index in range(30):
        ip("tuntap", "add", f"f{index}", "mode", "tap")
        ip("link", "del", f"f{index}")
FLOODED = {f"f{index}" for index in range(30)}
"""


def test_lost_events_lead_to_the_current_state_a_new_link() -> None:
    found, log = scenario(
        FLOOD
        + """
tap("t0")
with LinkWatcher(receive_buffer=1024) as watcher:
    flood()
    ip("tuntap", "add", "hot1", "mode", "tap")  # its event is lost in the overflow
    result(new=watcher.wait_new_link(FLOODED | {"t0"}, timeout=10))
"""
    )
    assert found == {"new": "hot1"}
    assert "Link events were lost" in log


def test_lost_events_lead_to_the_current_state_a_bounce() -> None:
    found, log = scenario(
        FLOOD
        + """
tap("t0"); fd = carrier_on("t0"); settle("t0", "UP")
with LinkWatcher(receive_buffer=1024) as watcher:
    flood()
    os.close(fd); settle("t0", "DOWN"); fd = carrier_on("t0"); settle("t0", "UP")
    watcher.wait_down_then_up("t0", timeout=10)
    result(done=True)
"""
    )
    assert found == {"done": True}
    assert "Link events were lost" in log
    assert "a bounce that was lost is taken as seen" in log


def test_a_signal_handler_s_exception_ends_a_wait_without_a_time_limit() -> None:
    found, _ = scenario("""
        class Terminated(Exception):
            pass
        def on_term(signum, frame):
            raise Terminated()
        signal.signal(signal.SIGTERM, on_term)
        tap("t0")
        with LinkWatcher() as watcher:
            later(0.3, lambda: os.kill(os.getpid(), signal.SIGTERM))
            try:
                watcher.wait_down_then_up("t0")
                result(ended="returned")
            except Terminated:
                result(ended="terminated")
    """)
    assert found == {"ended": "terminated"}


def test_list_links_shows_every_link_with_its_state() -> None:
    found, _ = scenario("""
        tap("t0"); fd = carrier_on("t0"); settle("t0", "UP"); tap("t1")
        result(links=[[link.name, link.oper_up, link.loopback] for link in list_links()])
    """)
    assert found == {"links": [["lo", False, True], ["t0", True, False], ["t1", False, False]]}


def _netlink_sockets() -> int:
    """How many netlink sockets this process holds (by inode, from /proc/net/netlink)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            mine.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    rows = Path("/proc/net/netlink").read_text().splitlines()[1:]
    return sum(f"socket:[{row.split()[-1]}]" in mine for row in rows)


def test_the_watcher_holds_its_socket_until_the_end_of_its_with() -> None:
    before = _netlink_sockets()
    with LinkWatcher() as watcher:
        assert _netlink_sockets() == before + 1
        assert isinstance(watcher, LinkWatcher)
    assert _netlink_sockets() == before


def test_a_socket_that_cannot_be_opened_is_a_one_line_host_error() -> None:
    """No file descriptor left (RLIMIT_NOFILE): the error names what failed and why."""
    code = textwrap.dedent("""
        import os, resource
        from azprov.errors import HostError
        from azprov.host.netlink import LinkWatcher
        lowest_free = os.dup(0); os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (lowest_free, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        try:
            LinkWatcher()
        except HostError as error:
            print(type(error).__name__, "|", error)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert done.stdout == (
        "HostError | cannot open a netlink socket for link events: Too many open files\n"
    ), done.stderr
