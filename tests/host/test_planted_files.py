"""A FIFO planted where azprov reads a file (ovf-env.xml, a DHCP lease) never hangs the boot."""

from __future__ import annotations

import os
import time

import pytest

from azprov.config import HostPath
from azprov.errors import UnsafePath
from azprov.host.leases import wireserver_from_leases
from azprov.host.media import read_media
from azprov.host.root import TargetRoot


def test_fifo_as_ovf_env_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "ovf-env.xml")
    started = time.monotonic()
    with pytest.raises(UnsafePath, match=r"/ovf-env\.xml is a FIFO"):
        read_media(TargetRoot(tmp_path / "root"), HostPath(str(tmp_path)))  # --config's
    assert time.monotonic() - started < 2


def test_fifo_among_dhcp_leases_does_not_hang(tmp_path):
    leases = tmp_path / "var/lib/dhcp"
    leases.mkdir(parents=True)
    os.mkfifo(leases / "dhclient.eth0.leases")
    (leases / "dhclient.eth1.leases").write_text("lease {\n  option unknown-245 a8:3f:81:10;\n}\n")
    assert wireserver_from_leases(tmp_path) == "168.63.129.16"
