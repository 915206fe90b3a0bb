"""The one HTTP layer, over real loopback HTTP against the simulated fabric.

Every retry class of the policy (refused for N s, ENETUNREACH, 503 with
Retry-After, 429, 500, timeouts), fast failure on other 4xx, the call's
deadline, and proxies in the environment being ignored.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import os
import shutil
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from azprov.errors import FabricError, HttpStatusError, TransportError
from azprov.fabric import transport
from azprov.fabric.http import Deadline, FabricHttp, Reply, RetryPolicy, redact_url
from azprov.simulator import Answer, SimulatedFabric
from azprov.simulator.documents import goal_state_xml
from tests.netfaults import (
    PROXY_VARIABLES,
    ConnectionRecorder,
    TlsServer,
    isolated_fabric,
    tools_for_namespaces,
)

WIRE = {"x-ms-version": "2012-11-30"}
FAST = RetryPolicy(
    connect_timeout=1.0, read_timeout=2.0, first_delay=0.05, max_delay=0.4, max_retry_after=5.0
)


@pytest.fixture
def http() -> Iterator[FabricHttp]:
    with FabricHttp(FAST) as client:
        yield client


def goal_state_url(fabric: SimulatedFabric) -> str:
    return f"{fabric.wireserver.base}/machine/?comp=goalstate"


def get_goal_state(http: FabricHttp, fabric: SimulatedFabric, budget: float = 10.0) -> Reply:
    reply: Reply = http.call(
        "goal state", "GET", goal_state_url(fabric), Deadline(budget), headers=WIRE
    )
    return reply


def gaps(fabric: SimulatedFabric) -> list[float]:
    times = [r.at for r in fabric.requests_to("wireserver")]
    return [b - a for a, b in zip(times, times[1:])]


def retry_logs(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "azprov.fabric.http")


# -- connection-level failures -------------------------------------------------


def test_refused_for_a_second_is_retried_until_the_listener_is_back(
    http: FabricHttp, fabric: SimulatedFabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fabric.wireserver.down_for(1.0)
    started = time.monotonic()
    reply = get_goal_state(http, fabric)
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert b"<Incarnation>1</Incarnation>" in reply.content
    assert elapsed >= 0.9, "the listener was down for 1 s: the first tries must have failed"
    assert "refused" in retry_logs(caplog).lower()
    # Refused connections never reach the server: exactly one request was served.
    assert len(fabric.requests_to("wireserver")) == 1


def test_network_unreachable_is_retried_injected_at_the_socket(
    http: FabricHttp,
    fabric: SimulatedFabric,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Loopback cannot produce ENETUNREACH by itself (the real thing is
    # test_network_unreachable_is_retried_for_real, which needs network
    # namespaces). Here only the first 3 connect() calls fail as the kernel
    # would early in boot; everything after them is the real socket and the
    # real fabric.
    calls: list[object] = []
    real_connect = socket.socket.connect

    def unreachable_then_real(sock: socket.socket, address: object) -> None:
        calls.append(address)
        if len(calls) <= 3:
            raise OSError(errno.ENETUNREACH, os.strerror(errno.ENETUNREACH))
        real_connect(sock, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", unreachable_then_real)
    caplog.set_level(logging.INFO)
    reply = get_goal_state(http, fabric)
    assert reply.status == 200
    assert len(calls) == 4
    assert retry_logs(caplog).count("Network is unreachable") == 3
    assert len(fabric.requests_to("wireserver")) == 1


@pytest.mark.skipif(not tools_for_namespaces(), reason="needs nsenter and ip")
def test_network_unreachable_is_retried_for_real(tmp_path: Path) -> None:
    """azprov in a network namespace whose loopback is down: a real ENETUNREACH."""
    import subprocess

    isolated = isolated_fabric()
    if isolated is None:
        pytest.skip("cannot create a network namespace here (needs CAP_SYS_ADMIN)")
    assert isolated is not None
    try:
        config = tmp_path / "azprov.conf"
        config.write_text(isolated.fabric.config_text(total_timeout=15), encoding="utf-8")
        process = subprocess.Popen(
            [
                *isolated.nsenter(),
                sys.executable,
                "-m",
                "azprov",
                "--config",
                str(config),
                "--root",
                str(tmp_path),
                "report-ready",
            ],
            pass_fds=[isolated.ns_fd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        # Bring the network up once azprov has met ENETUNREACH (its retry line),
        # however long its start-up takes on a loaded machine.
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if "Network is unreachable" in line:
                break
        assert process.poll() is None, "azprov must still be retrying while the network is down"
        isolated.bring_up()
        _, rest = process.communicate(timeout=20)
        stderr = "".join(seen) + rest
        assert process.returncode == 0, stderr
        assert "Network is unreachable" in stderr
        assert [(r.state, r.incarnation) for r in isolated.fabric.health_reports] == [
            ("Ready", "1")
        ]
    finally:
        isolated.close()


def test_server_hanging_up_without_a_reply_is_retried(http: FabricHttp) -> None:
    silent = ConnectionRecorder(reply=None)
    try:
        with pytest.raises(FabricError) as caught:
            http.call("goal state", "GET", f"{silent.url}/machine/?comp=goalstate", Deadline(1.0))
    finally:
        silent.close()
    assert caught.value.reason == "fabric_timeout"
    assert int(caught.value.supporting_data["attempts"]) >= 3
    assert len(silent.received) >= 3
    assert "disconnected" in caught.value.supporting_data["last_error"].lower()


# -- HTTP statuses that are retried ------------------------------------------------


def test_503_with_retry_after_waits_as_told(http: FabricHttp, fabric: SimulatedFabric) -> None:
    fabric.wireserver.script([Answer(503, headers={"Retry-After": "1"})], "/machine")
    reply = get_goal_state(http, fabric)
    assert reply.status == 200
    assert [r.status for r in fabric.requests_to("wireserver")] == [503, 200]
    # The backoff alone is at most 0.4 s here: only Retry-After explains a 1-s gap.
    assert gaps(fabric)[0] >= 0.95


def test_retry_after_as_an_http_date(http: FabricHttp, fabric: SimulatedFabric) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1-2 s away
    fabric.wireserver.script([Answer(503, headers={"Retry-After": when})], "/machine")
    assert get_goal_state(http, fabric).status == 200
    assert 0.9 <= gaps(fabric)[0] <= 2.6


def test_retry_after_is_capped(fabric: SimulatedFabric) -> None:
    policy = RetryPolicy(first_delay=0.01, max_delay=0.05, max_retry_after=0.3)
    fabric.wireserver.script([Answer(429, headers={"Retry-After": "3600"})], "/machine")
    with FabricHttp(policy) as http:
        assert get_goal_state(http, fabric).status == 200
    assert 0.28 <= gaps(fabric)[0] < 1.0


def test_unparseable_retry_after_falls_back_to_backoff(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script([Answer(503, headers={"Retry-After": "soon"})], "/machine")
    assert get_goal_state(http, fabric).status == 200
    assert gaps(fabric)[0] < 0.5


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(
    http: FabricHttp, fabric: SimulatedFabric, status: int
) -> None:
    fabric.wireserver.script([Answer(status), Answer(status)], "/machine")
    reply = get_goal_state(http, fabric)
    assert reply.status == 200
    assert [r.status for r in fabric.requests_to("wireserver")] == [status, status, 200]


def test_backoff_grows_between_tries(http: FabricHttp, fabric: SimulatedFabric) -> None:
    fabric.wireserver.script([Answer(500)] * 5, "/machine")
    assert get_goal_state(http, fabric).status == 200
    spaced = gaps(fabric)
    assert len(spaced) == 5
    # Doubling from 0.05 s, half-jittered, capped at 0.4 s.
    assert spaced[0] < 0.2 and spaced[-1] >= 0.19
    assert all(gap <= 0.4 + 0.3 for gap in spaced)


def test_slow_reply_times_out_and_is_retried(
    fabric: SimulatedFabric, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = goal_state_xml(fabric.spec, fabric.advertised_base)
    fabric.wireserver.script([Answer(200, body, delay=1.5)], "/machine")
    policy = RetryPolicy(connect_timeout=0.5, read_timeout=0.4, first_delay=0.05, max_delay=0.1)
    started = time.monotonic()
    with FabricHttp(policy) as http:
        assert get_goal_state(http, fabric).status == 200
    assert time.monotonic() - started < 1.4, "the slow reply must not have been waited for"
    assert "timed out" in retry_logs(caplog)
    assert len(fabric.requests_to("wireserver")) == 2


def test_one_slow_request_cannot_outlive_the_deadline(fabric: SimulatedFabric) -> None:
    fabric.wireserver.delay = 5.0
    started = time.monotonic()
    with FabricHttp(RetryPolicy(read_timeout=30.0)) as http, pytest.raises(FabricError) as caught:
        get_goal_state(http, fabric, budget=1.0)
    assert time.monotonic() - started < 1.6
    assert caught.value.reason == "fabric_timeout"
    assert "timed out" in str(caught.value)


# -- statuses that fail at once ------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413])
def test_other_4xx_fail_fast_with_the_status_and_body(
    http: FabricHttp, fabric: SimulatedFabric, status: int
) -> None:
    fabric.wireserver.script(
        [Answer(status, b"<Error><Code>Nope</Code>\n<Message>no such thing</Message></Error>")],
        "/machine",
    )
    started = time.monotonic()
    with pytest.raises(FabricError) as caught:
        get_goal_state(http, fabric)
    assert time.monotonic() - started < 0.5
    assert len(fabric.requests_to("wireserver")) == 1
    message = str(caught.value)
    assert f"HTTP {status}" in message and "<Code>Nope</Code>" in message
    assert "\n" not in message
    assert caught.value.reason == "http_error"
    assert caught.value.supporting_data["status"] == str(status)


# -- budget ----------------------------------------------------------------------------


def test_budget_exhaustion_names_attempts_and_last_error(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.stop()
    started = time.monotonic()
    with pytest.raises(FabricError) as caught:
        get_goal_state(http, fabric, budget=1.5)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed <= 1.5 + 0.5
    error = caught.value
    assert error.reason == "fabric_timeout"
    message = str(error)
    assert message.startswith("goal state: no usable answer from http://127.0.0.1:")
    assert "within 1.5 s" in message
    assert "refused" in message.lower()
    attempts = int(error.supporting_data["attempts"])
    assert attempts >= 3 and f"({attempts} attempts)" in message
    assert "refused" in error.supporting_data["last_error"].lower()


def test_retry_after_beyond_the_budget_gives_up_with_the_reason(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script([Answer(503, headers={"Retry-After": "4"})], "/machine")
    started = time.monotonic()
    with pytest.raises(FabricError) as caught:
        get_goal_state(http, fabric, budget=1.0)
    assert time.monotonic() - started < 1.5
    assert "HTTP 503" in str(caught.value)
    assert "Retry-After" in str(caught.value)


# -- proxies and sizes ---------------------------------------------------------------


def test_proxies_in_the_environment_are_ignored(
    fabric: SimulatedFabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ConnectionRecorder()
    try:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # Control: a client that honours the environment does reach the recorder,
        # so the recorder would notice if azprov's client did the same.
        with httpx.Client(trust_env=True) as honouring:
            honouring.get(goal_state_url(fabric), headers=WIRE)
        assert len(proxy.received) == 1 and goal_state_url(fabric).encode() in proxy.received[0]
        assert fabric.requests_to("wireserver") == []

        with FabricHttp(FAST) as http:
            assert get_goal_state(http, fabric).status == 200
        assert len(proxy.received) == 1, "azprov's client went through the proxy"
        assert len(fabric.requests_to("wireserver")) == 1
    finally:
        proxy.close()


def test_reply_larger_than_max_bytes_is_refused_not_retried(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script([Answer(200, b"x" * 10_000)], "/machine")
    with pytest.raises(FabricError) as caught:
        http.call(
            "goal state", "GET", goal_state_url(fabric), Deadline(5), headers=WIRE, max_bytes=1000
        )
    assert caught.value.reason == "reply_too_large"
    assert len(fabric.requests_to("wireserver")) == 1


def test_sink_receives_the_body_of_the_last_try_only(
    http: FabricHttp, fabric: SimulatedFabric, tmp_path: Path
) -> None:
    fabric.wireserver.script([Answer(500, b"partial garbage " * 100)], "/machine")
    with open(tmp_path / "body", "w+b") as sink:
        http.call(
            "goal state", "GET", goal_state_url(fabric), Deadline(5), headers=WIRE, sink=sink
        )
    assert (tmp_path / "body").read_bytes() == goal_state_xml(fabric.spec, fabric.advertised_base)


def test_secrets_in_urls_are_redacted() -> None:
    url = "https://blob.example/x?sv=2020&sig=SECRET%2B&se=1&token=T0K&code=abc"
    shown = redact_url(url)
    assert "SECRET" not in shown and "T0K" not in shown and "abc" not in shown
    assert "sv=2020" in shown and "se=1" in shown


def test_errors_name_the_redacted_url(http: FabricHttp, fabric: SimulatedFabric) -> None:
    fabric.wireserver.script([Answer(404)], "/machine")
    with pytest.raises(FabricError) as caught:
        http.call(
            "artifact",
            "GET",
            f"{fabric.wireserver.base}/machine?comp=x&sig=TOPSECRET",
            Deadline(5),
        )
    assert "TOPSECRET" not in str(caught.value)
    assert "sig=<redacted>" in str(caught.value)


# -- costs that are not retries ----------------------------------------------------------------


def test_post_with_a_body_is_not_held_back_by_nagle(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    # httpx writes the request head and body separately; without TCP_NODELAY the
    # body waits for the server's delayed ACK (40 ms on Linux, 200 ms on Windows).
    url = f"{fabric.wireserver.base}/machine?comp=health"
    fabric.wireserver.route("POST", "/machine?comp=health", lambda r: Answer(200))
    get_goal_state(http, fabric)  # a connection exists, as in report-ready
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        http.call("health", "POST", url, Deadline(5), headers=WIRE, content=b"<Health/>" * 50)
        durations.append(time.perf_counter() - started)
    median = sorted(durations)[2]
    assert median < 0.03, f"a loopback POST took {median * 1000:.0f} ms"  # delayed ACK: 40 ms


def test_first_request_on_a_new_connection_can_be_a_fast_post(fabric: SimulatedFabric) -> None:
    url = f"{fabric.wireserver.base}/machine?comp=health"
    fabric.wireserver.route("POST", "/machine?comp=health", lambda r: Answer(200))
    durations = []
    for _ in range(3):
        with FabricHttp(FAST) as http:
            started = time.perf_counter()
            http.call("health", "POST", url, Deadline(5), headers=WIRE, content=b"x" * 300)
            durations.append(time.perf_counter() - started)
    assert min(durations) < 0.03, [f"{d * 1000:.0f} ms" for d in durations]


@pytest.mark.skipif(not shutil.which("openssl"), reason="needs the openssl CLI")
def test_https_is_still_verified(tmp_path: Path) -> None:
    # Plain http:// goes through a transport with no CA bundle loaded (cheap);
    # https:// must still be verified against the default CA bundle.
    server = TlsServer(tmp_path)
    try:
        # Control: a client that trusts the throwaway certificate gets through.
        trusting = ssl.create_default_context(cafile=str(server.certificate))
        assert httpx.get(server.url, verify=trusting).text == "ok"
        with FabricHttp(FAST) as http, pytest.raises(FabricError) as caught:
            http.call("artifact", "GET", server.url, Deadline(0.5))
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        server.close()


def test_httpx_request_logs_stay_off_whoever_set_up_logging() -> None:
    """httpx 0.24+ logs every request URL at INFO, SAS signatures included: importing
    azprov's HTTP layer turns that off, for the CLI and for anyone calling it in-process."""
    import subprocess

    probe = (
        "import logging; logging.basicConfig(level=logging.DEBUG); "
        "[logging.getLogger(n).setLevel(logging.DEBUG) for n in ('httpx', 'httpcore')]; "
        "import azprov.fabric.http; "
        "print(logging.getLogger('httpx').level, logging.getLogger('httpcore').level)"
    )
    levels = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    assert levels == [str(logging.WARNING)] * 2


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "gopher://127.0.0.1/x"])
def test_a_request_that_cannot_be_sent_fails_at_once_as_a_transport_error(
    http: FabricHttp, url: str
) -> None:
    """Not the server's answer (that is HttpStatusError) and not worth a retry."""
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        http.call("goal state", "GET", url, Deadline(10))
    assert time.monotonic() - started < 1
    assert caught.value.reason == "transport_error"
    assert str(caught.value).startswith(f"goal state: GET {url} failed: ")
    assert not isinstance(caught.value, HttpStatusError)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/machine?comp=goal state", "spaces, control or non-ASCII"),
        ("http://127.0.0.1/m\u00e4chine", "spaces, control or non-ASCII"),
        ("http://127.0.0.1/machine\r\nX-Injected: 1", "spaces, control or non-ASCII"),
        ("http:///machine", "names no host"),
        ("http://127.0.0.1:port/machine", "unusable URL"),
        ("http://[::1/machine", "unusable URL"),
        ("//127.0.0.1/machine", "unsupported URL scheme ''"),
    ],
)
def test_a_url_that_cannot_be_sent_as_it_is_fails_at_once_naming_why(
    http: FabricHttp, url: str, why: str
) -> None:
    """URLs come from the goal state: nothing is escaped or guessed on their behalf,
    and a header cannot be smuggled in through one."""
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        http.call("artifact", "GET", url, Deadline(10))
    assert time.monotonic() - started < 1
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_redirect_is_the_servers_answer_not_followed(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    fabric.wireserver.script(
        [Answer(302, headers={"Location": f"{fabric.imds.base}/metadata/instance"})], "/machine"
    )
    with pytest.raises(HttpStatusError) as caught:
        get_goal_state(http, fabric)
    assert caught.value.status == 302
    assert fabric.requests_to("imds") == []


def test_requests_carry_the_agent_name_and_no_accept_encoding(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    """No Accept-Encoding: replies are used as sent, never decompressed on the way."""
    get_goal_state(http, fabric)
    (request,) = fabric.requests_to("wireserver")
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["user-agent"].startswith("azprov")
    assert "accept-encoding" not in headers


def test_a_url_is_sent_exactly_as_written_params_and_all(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    """`;params` belong to the path: dropping them would fetch another resource than
    the one named in every message."""
    url = f"{fabric.wireserver.base}/machine;x=1/blob;v=2?comp=goalstate&a=%2F"
    http.call("artifact", "GET", url, Deadline(5), accept=range(100, 600))
    (request,) = fabric.requests_to("wireserver")
    assert request.path == "/machine;x=1/blob;v=2?comp=goalstate&a=%2F"


def test_the_host_header_of_an_ipv6_endpoint_is_bracketed(http: FabricHttp) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = ConnectionRecorder(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        reply: Reply = http.call(
            "goal state", "GET", f"{server.url}/machine", Deadline(5), accept=range(100, 600)
        )
        assert reply.status == 502  # the recorder's answer: it was reached over IPv6
        head = server.received[0].decode("latin-1").lower()
        assert f"host: [::1]:{server.port}\r\n" in head
    finally:
        server.close()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("https://store.example/m.xml?sv=1&sig=SECRET\r\nX-Evil: 1", "control or non-ASCII"),
        ("https://store.example/m\u00e4.xml?sv=1&sig=SECRET", "control or non-ASCII"),
    ],
)
def test_a_header_that_cannot_be_sent_fails_at_once_without_quoting_it(
    http: FabricHttp, fabric: SimulatedFabric, value: str, why: str
) -> None:
    """The HostGAPlugin is given the artifact URL, SAS signature included, in a header:
    a value that no server would take is refused before sending, and not repeated."""
    with pytest.raises(TransportError) as caught:
        http.call(
            "manifest via the HostGAPlugin",
            "GET",
            f"{fabric.wireserver.base}/extensionArtifact",
            Deadline(5),
            headers={"x-ms-artifact-location": value},
        )
    assert why in str(caught.value) and "x-ms-artifact-location" in str(caught.value)
    assert "SECRET" not in str(caught.value)
    assert fabric.requests_to("wireserver") == []


def test_a_url_with_user_info_is_refused(http: FabricHttp, fabric: SimulatedFabric) -> None:
    url = fabric.wireserver.base.replace("http://", "http://user:pw@") + "/machine"
    with pytest.raises(TransportError) as caught:
        http.call("goal state", "GET", url, Deadline(5))
    assert "user info" in str(caught.value)
    assert fabric.requests_to("wireserver") == []


class KeepAliveServer:
    """Answers every request 200 and keeps each connection open; counts connections."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    if not conn.recv(65536):
                        return
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    return

    def close(self) -> None:
        self._sock.close()


def test_an_idle_connection_is_not_reused_after_the_keepalive_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that went silent while idle would cost the next call its whole
    read timeout (and a health POST would be sent twice)."""
    monkeypatch.setattr(transport, "KEEPALIVE_EXPIRY", 0.3)
    server = KeepAliveServer()
    url = f"http://127.0.0.1:{server.port}/machine"
    try:
        with FabricHttp(FAST) as http:
            http.call("goal state", "GET", url, Deadline(5))
            http.call("goal state", "GET", url, Deadline(5))
            assert server.connections == 1  # control: reused while fresh
            time.sleep(0.5)
            http.call("goal state", "GET", url, Deadline(5))
            assert server.connections == 2
    finally:
        server.close()
