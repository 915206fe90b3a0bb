"""A pile of lease files (20,000 links to one 1 MiB file took ten minutes) is read only
up to a bounded count per location and a bounded number of bytes (review M4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from azprov.confined import Confined, InTree, Links
from azprov.host.leases import wireserver_from_leases

OPTION_245 = b"lease {\n  option unknown-245 a8:3f:81:10;\n}\n"


class CountingTree(Confined):
    """The door, counting the lease files read and their bytes."""

    reads = 0
    bytes_read = 0

    def read(self, path: InTree, cap: int, *, links: Links = Links.IN_ROOT) -> Optional[bytes]:
        data = super().read(path, cap, links=links)
        self.reads += 1
        self.bytes_read += len(data or b"")
        return data


def _lease_dir(tmp_path: Path) -> Path:
    leases = tmp_path / "var/lib/dhcp"
    leases.mkdir(parents=True)
    return leases


def test_only_the_newest_lease_files_of_a_location_are_read(tmp_path: Path) -> None:
    leases = _lease_dir(tmp_path)
    oldest = leases / "dhclient.oldest.leases"
    oldest.write_bytes(OPTION_245)
    os.utime(oldest, (1_000, 1_000))
    for index in range(200):
        (leases / f"dhclient.{index}.leases").write_bytes(b"lease { }\n")
        os.utime(leases / f"dhclient.{index}.leases", (10_000 + index, 10_000 + index))
    tree = CountingTree(tmp_path)
    assert wireserver_from_leases(tree) is None  # the 201st newest is never reached
    assert tree.reads <= 64


def test_lease_files_are_read_up_to_a_total_byte_budget(tmp_path: Path) -> None:
    leases = _lease_dir(tmp_path)
    big = leases / "dhclient.leases"
    big.write_bytes((b"lease { option routers 10.0.0.1; }\n" * 30000)[: 900 << 10])
    for index in range(20):
        os.link(big, leases / f"dhclient.{index}.leases")
    tree = CountingTree(tmp_path)
    assert wireserver_from_leases(tree) is None
    assert tree.bytes_read <= (4 << 20) + (1 << 20)


def test_the_newest_lease_with_option_245_still_wins(tmp_path: Path) -> None:
    leases = _lease_dir(tmp_path)
    (leases / "dhclient.eth0.leases").write_bytes(OPTION_245)
    assert wireserver_from_leases(tmp_path) == "168.63.129.16"
