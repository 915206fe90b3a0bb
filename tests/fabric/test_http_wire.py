"""What the one HTTP client puts on the wire and keeps from it, whichever httpx is installed.

Each rule here is one that httpx, used with its defaults, would break: a URL
rewritten on the way out, a CA bundle loaded for plain HTTP, a cookie sent
back, a compressed reply inflated past its cap, a header value quoted in an
error.
"""

from __future__ import annotations

import gzip
import ssl
from typing import Any, Callable, Iterator

import pytest

from azprov.errors import FabricError, TransportError
from azprov.fabric.http import Deadline, FabricHttp, Reply, RetryPolicy
from azprov.simulator import Answer, SimulatedFabric
from tests.netfaults import ConnectionRecorder

FAST = RetryPolicy(connect_timeout=1.0, read_timeout=2.0, first_delay=0.05, max_delay=0.2)
ANY_STATUS = range(100, 600)


@pytest.fixture
def http() -> Iterator[FabricHttp]:
    with FabricHttp(FAST) as client:
        yield client


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    server = ConnectionRecorder()
    try:
        yield server
    finally:
        server.close()


def request_line(recorder: ConnectionRecorder) -> str:
    (received,) = recorder.received
    return received.split(b"\r\n", 1)[0].decode("ascii")


@pytest.mark.parametrize(
    "target",
    [
        "/machine/../machine?comp=goalstate",
        "/machine/./x",
        "/m%2fx?sig=ab%2b%3d",
        '/m{a}|b^c`d"e<f>\\g?q={x}|y',
        "/x?",
    ],
)
def test_a_url_goes_out_exactly_as_written_or_is_refused_naming_why(
    http: FabricHttp, recorder: ConnectionRecorder, target: str
) -> None:
    """httpx normalises URLs (dot segments, %-escapes, characters it escapes) and
    each version differently: what it would rewrite is either sent as written anyway
    or refused before anything is sent, in one line that does not quote the URL."""
    try:
        reply: Reply = http.call(
            "artifact", "GET", f"{recorder.url}{target}", Deadline(5), accept=ANY_STATUS
        )
    except TransportError as refused:
        reason = str(refused).split(" failed: ", 1)[1]
        assert reason.startswith("httpx ") and "would rewrite the URL" in reason
        assert "\n" not in reason and target not in reason and "{x}" not in reason
        assert recorder.received == []
        return
    assert reply.status == 502  # the recorder's answer: the request reached it
    assert request_line(recorder) == f"GET {target} HTTP/1.1"


def test_the_plain_http_path_loads_no_ca_bundle_and_https_loads_one_once(
    fabric: SimulatedFabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a CA bundle costs tens of milliseconds of a first boot that only talks
    plain HTTP; storage (https://) verifies against the system store, loaded once."""
    loads: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        real = getattr(ssl.SSLContext, name)

        def count(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
            loads.append(name)
            return real(self, *args, **kwargs)

        return count

    for name in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
        monkeypatch.setattr(ssl.SSLContext, name, counting(name))
    with FabricHttp(FAST) as http:
        for _ in range(2):
            http.call(
                "goal state",
                "GET",
                f"{fabric.wireserver.base}/machine?comp=goalstate",
                Deadline(5),
                headers={"x-ms-version": "2012-11-30"},
            )
        assert loads == []
        for _ in range(2):  # refused at once: nothing listens on port 1
            with pytest.raises(FabricError):
                http.call(
                    "blob",
                    "GET",
                    "https://127.0.0.1:1/x",
                    Deadline(0.3),
                    policy=RetryPolicy(max_attempts=1),
                )
    # ssl.create_default_context(): the system store (which sets the default paths), once.
    assert loads.count("load_default_certs") == 1, loads
    assert "load_verify_locations" not in loads, loads


def test_a_cookie_a_server_sets_is_never_sent_back(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    """azprov's requests carry what azprov puts in them, nothing a server planted."""
    url = f"{fabric.wireserver.base}/machine?comp=goalstate"
    fabric.wireserver.script(
        [Answer(200, b"<x/>", headers={"Set-Cookie": "session=planted; Path=/"})], "/machine"
    )
    for _ in range(2):
        http.call("goal state", "GET", url, Deadline(5), headers={"x-ms-version": "2012-11-30"})
    second = fabric.requests_to("wireserver")[1]
    assert "cookie" not in second.headers


def test_a_compressed_reply_is_kept_as_sent_never_inflated_past_its_cap(
    http: FabricHttp, fabric: SimulatedFabric
) -> None:
    """No Accept-Encoding is sent; a server that compresses anyway gets its bytes
    returned as they came, so the size cap holds for what is actually kept."""
    body = gzip.compress(b"<x>" + b"a" * 200_000 + b"</x>")
    assert len(body) < 2_000
    fabric.wireserver.script([Answer(200, body, headers={"Content-Encoding": "gzip"})], "/machine")
    reply: Reply = http.call(
        "goal state",
        "GET",
        f"{fabric.wireserver.base}/machine?comp=goalstate",
        Deadline(5),
        headers={"x-ms-version": "2012-11-30"},
        max_bytes=2_000,
    )
    assert reply.content == body
    (request,) = fabric.requests_to("wireserver")
    assert "accept-encoding" not in request.headers


def test_a_header_value_with_edge_whitespace_is_refused_without_quoting_it(
    http: FabricHttp, recorder: ConnectionRecorder
) -> None:
    """h11 refuses such a value with a message that quotes it, and the HostGAPlugin's
    x-ms-artifact-location header carries a SAS URL: azprov names the header only."""
    value = "https://store.example/m.xml?sv=1&sp=r&se=2030&st=TOPSECRET "
    with pytest.raises(TransportError) as caught:
        http.call(
            "manifest via the HostGAPlugin",
            "GET",
            f"{recorder.url}/extensionArtifact",
            Deadline(5),
            headers={"x-ms-artifact-location": value},
        )
    message = str(caught.value)
    assert "x-ms-artifact-location" in message and "whitespace" in message
    assert "TOPSECRET" not in message and "store.example" not in message
    assert recorder.received == []
