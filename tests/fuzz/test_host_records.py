"""Fuzzing what the host keeps for azprov to read: DHCP leases and the KVP pool.

The leases are written under a target root in each DHCP client's real format
(ISC dhclient's lease blocks, systemd-networkd's and NetworkManager's internal
client's KEY=value files) and read by `wireserver_from_leases` as on a boot.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.host.kvp import KEY_SIZE, VALUE_SIZE, decode_records, encode_record
from azprov.host.leases import wireserver_from_leases
from tests.fuzz.hostile import counts, examples, hostile_text, peak_allocation, said, typed_outcome

DEADLINE = timedelta(seconds=2)

# ISC dhclient, as /var/lib/dhcp/dhclient.eth0.leases holds it on an Azure VM.
DHCLIENT = """lease {{
  interface "eth0";
  fixed-address 10.0.0.4;
  server-name "RD000D3A000001";
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time 4294967295;
  option routers 10.0.0.1;
  option dhcp-message-type 5;
  option dhcp-server-identifier 168.63.129.16;
  option domain-name-servers 168.63.129.16;
  option dhcp-renewal-time 4294967295;
  option rfc3442-classless-static-routes 0,10,0,0,1,32,168,63,129,16,10,0,0,1,32,169,254,169,254,10,0,0,1;
  option unknown-245 {option};
  option dhcp-rebinding-time 4294967295;
  option host-name "vm0";
  option domain-name "{domain}";
  renew 4 2158/02/06 12:27:02;
  rebind 4 2158/02/06 12:27:02;
  expire 4 2158/02/06 12:27:02;
}}
"""

# systemd-networkd's /run/systemd/netif/leases/<ifindex> (and NetworkManager's
# internal client before 1.36, which wrote the same file): hex, lower case.
NETWORKD = """# This is private data. Do not parse.
ADDRESS=10.0.0.4
NETMASK=255.255.255.0
ROUTER=10.0.0.1
SERVER_ADDRESS=168.63.129.16
NEXT_SERVER=0.0.0.0
T1=4294967295
T2=4294967295
LIFETIME=4294967295
DNS=168.63.129.16
DOMAINNAME={domain}
HOSTNAME=vm0
CLIENTID=ff33a0b6c40002000000ab11f8a0f0e1c2d3e4f5a6
OPTION_245={option}
"""

LOCATIONS = {
    "var/lib/dhcp/dhclient.eth0.leases": DHCLIENT,
    "var/lib/dhclient/dhclient--eth0.lease": DHCLIENT,
    "var/lib/NetworkManager/dhclient-5b9e2f2a-eth0.lease": DHCLIENT,
    "run/systemd/netif/leases/2": NETWORKD,
    "var/lib/NetworkManager/internal-5b9e2f2a-eth0.lease": NETWORKD,
}


def option_values() -> st.SearchStrategy[str]:
    """Option 245 as each client may write it, and near it."""
    octets = st.lists(st.integers(0, 255), min_size=0, max_size=6)
    return st.one_of(
        octets.map(lambda b: ":".join(f"{x:x}" for x in b)),  # dhclient: a8:3f:81:10
        octets.map(lambda b: bytes(b).hex()),  # networkd: a83f8110
        octets.map(lambda b: bytes(b).hex().upper()),
        octets.map(lambda b: '"' + "".join(f"\\{x:03o}" for x in b) + '"'),  # dhclient's string
        st.text(st.sampled_from('0123456789abcdefABCDEF:"\\; \n'), max_size=40),
        hostile_text(),
    )


@st.composite
def lease_files(draw: st.DrawFn) -> list[tuple[str, str]]:
    files = []
    for location in draw(st.lists(st.sampled_from(sorted(LOCATIONS)), min_size=1, max_size=3)):
        template = LOCATIONS[location]
        text = template.format(option=draw(option_values()), domain=draw(hostile_text()))
        text = text * draw(st.sampled_from([1, 1, 2, 50]))  # dhclient appends a block per renewal
        if draw(st.booleans()):
            text = (
                draw(st.sampled_from(["", "\0", "\n", "lease {", text[: len(text) // 2]])) + text
            )
        files.append((location, text))
    if draw(st.booleans()):  # a lease file near its read cap
        location = draw(st.sampled_from(sorted(LOCATIONS)))
        junk = said(
            draw(st.sampled_from(["option unknown-245 ", "a8:3f:", "OPTION_245=", "\\"])), 200_000
        )
        files.append((location, junk))
    return files


def _read_leases(files: list[tuple[str, str]], encoding: str) -> str | None:
    root = Path(tempfile.mkdtemp(prefix="azprov-fuzz-leases-"))
    try:
        for relative, text in files:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode(encoding, errors="replace"))
        return wireserver_from_leases(root)
    finally:
        shutil.rmtree(root)


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(lease_files(), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_leases_give_a_usable_address_none_or_a_typed_error(
    files: list[tuple[str, str]], encoding: str
) -> None:
    address = typed_outcome(_read_leases, files, encoding)
    if address is not None:
        parsed = ipaddress.IPv4Address(address)
        assert not (parsed.is_unspecified or parsed.is_multicast or parsed.is_loopback)


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(st.sampled_from(sorted(LOCATIONS)), st.binary(max_size=4096))
def test_leases_of_any_bytes_give_an_address_none_or_a_typed_error(
    location: str, content: bytes
) -> None:
    typed_outcome(_read_leases, [(location, content.decode("latin-1"))], "latin-1")


# -- the KVP pool ------------------------------------------------------------------------------

RECORD = KEY_SIZE + VALUE_SIZE


@settings(max_examples=examples(200), deadline=DEADLINE)
@given(st.binary(max_size=3 * RECORD + 100))
def test_kvp_pool_of_any_bytes_decodes_to_whole_records(data: bytes) -> None:
    records = decode_records(data)
    assert len(records) == len(data) // RECORD
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in records)


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(
    st.lists(st.tuples(hostile_text(), hostile_text()), max_size=5),
    st.binary(max_size=RECORD),
    counts(100),
)
def test_kvp_pool_near_valid_decodes_what_was_written(
    records: list[tuple[str, str]], tail: bytes, times: int
) -> None:
    pool = b"".join(encode_record(k, v) for k, v in records) * times + tail
    decoded = typed_outcome(decode_records, pool)
    assert decoded is not None
    assert len(decoded) == len(records) * times + len(tail) // RECORD


KVP_BYTES_PER_BYTE = 8
SLACK = 256 * 1024


@settings(
    max_examples=examples(10), deadline=None
)  # tracemalloc slows it tenfold: the time is not the point
@given(st.sampled_from([b"\0", b"a", b"\xff", "é".encode(), b"\xe2\x82"]), counts(8 * 1024 * 1024))
def test_kvp_pool_memory_is_linear_in_the_pool(byte: bytes, size: int) -> None:
    pool = (byte * size)[:size]
    peak = peak_allocation(lambda: decode_records(pool))
    assert peak <= KVP_BYTES_PER_BYTE * len(pool) + SLACK, (
        f"a pool of {len(pool)} bytes took {peak} bytes at the peak"
    )
