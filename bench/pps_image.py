"""The images bench/pps_compare.py boots: azprov's (the emulated-boot tests' recipe with
the .deb) and Debian 12's own cloud-init on the same recipe, without azprov.

The cloud-init rootfs is the tests' package list plus `cloud-init` (22.4.2 in
bookworm; its Depends bring isc-dhcp-client for the Azure datasource's ephemeral
DHCP, eject for the provisioning media), built with mmdebstrap and cached beside
the tests' own tarball. What is added on top is emulation plumbing, each piece
for a difference between qemu's user network and Azure's, not tuning:

- datasource_list [ Azure ]: what an Azure image ships (Debian's default list
  makes ds-identify probe every cloud);
- cloud-init's network config off: the image's own systemd-networkd file (the
  tests' plumbing) carries the default route Azure's DHCP hands out and slirp
  with restrict=on does not; cloud-init would render a file of its own without it;
- dhclient `supersede routers 10.0.2.2`: the datasource's ephemeral DHCP
  (dhclient -sf /bin/true, lease file parsed by cloud-init) gets the router
  Azure's DHCP would give, so 168.63.129.16 and 169.254.169.254 have a route to
  be DNATed on (without one, connect() fails with ENETUNREACH before nftables);
- cloud-init-local.service after nftables.service: both are only ordered before
  network-pre.target, and the DNAT must be loaded before the first request;
- bench-logs.service: cloud-init's log, result and the units' timestamps to the
  probe's port before the probe reports.

Both images (install_bench_plumbing) also lose the tests' ExecStartPre snapshot
on ssh.service (it would sit in sshd's start path, and the login proves what it
checks) and get bench-logs.service, which also writes sshd's first "Server
listening" line (the guest's own account of when logins became possible).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e import image  # noqa: E402
from tests.e2e.image import BootFiles  # noqa: E402

CLOUD_INIT_PACKAGES = (*image.PACKAGES, "cloud-init")

CLOUD_CFG = """\
# bench/pps_compare.py: an Azure image's datasource list; the network is the image's
# own systemd-networkd configuration (emulation plumbing, see bench/pps_image.py).
datasource_list: [ Azure ]
network:
  config: disabled
"""

DHCLIENT_ROUTER = """
# bench/pps_compare.py: the router Azure's DHCP hands out (qemu's restricted slirp
# offers none); cloud-init's ephemeral DHCP reads it back from the lease file.
supersede routers 10.0.2.2;
"""

LOCAL_AFTER_NFTABLES = """\
# bench/pps_compare.py: the DNAT of Azure's addresses must be loaded before the
# datasource's first request (both units are only ordered before network-pre.target).
[Unit]
Wants=nftables.service
After=nftables.service
"""

LOGS_UNIT = """\
[Unit]
Description=bench: sshd's and cloud-init's records to the probe's port
After=cloud-final.service cloud-config.service cloud-init.service ssh.service
Before=e2e-probe.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/bench-logs

[Install]
# Pulled in by the probe, not by multi-user.target: cloud-final.service is ordered
# after multi-user.target, so a unit after it that the target wants is a cycle.
WantedBy=e2e-probe.service
"""

LOGS_SCRIPT = """\
#!/bin/sh
# bench: when sshd listened, what cloud-init did and when, to the probe's port (ttyS1).
exec >/dev/ttyS1 2>&1
echo "PROBE-SECTION sshd-listening"
journalctl -b --no-pager -o short-monotonic -u ssh.service | grep -m1 'Server listening'
[ -e /usr/bin/cloud-init ] || { echo "PROBE-SECTION end"; exit 0; }
for unit in cloud-init-local.service cloud-init.service cloud-config.service \\
    cloud-final.service ssh.service; do
    for prop in InactiveExitTimestampMonotonic ActiveEnterTimestampMonotonic; do
        printf 'PROBE %s:%s=%s\\n' "$unit" "$prop" "$(systemctl show -P "$prop" "$unit")"
    done
done
printf 'PROBE cloud_init_version=%s\\n' "$(dpkg-query -W -f='${Version}' cloud-init)"
echo "PROBE-SECTION cloud-init-result"
cat /run/cloud-init/result.json 2>/dev/null
echo "PROBE-SECTION cloud-init-log"
cat /var/log/cloud-init.log 2>/dev/null
echo "PROBE-SECTION end"
"""


def cloud_init_key(suite: str = image.SUITE) -> str:
    recipe = "\n".join([suite, "variant=apt", *sorted(CLOUD_INIT_PACKAGES)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    """The tests' cache lock, so two builders never write the same tarball."""
    image.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (image.CACHE_DIR / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cloud_init_rootfs(suite: str = image.SUITE) -> Path:
    """The cloud-init rootfs tarball, built with mmdebstrap on first use (a few minutes)."""
    tarball = image.CACHE_DIR / f"rootfs-{suite}-cloud-init-{cloud_init_key(suite)}.tar"
    with _cache_lock():
        if not tarball.is_file():
            image.build_rootfs(tarball, CLOUD_INIT_PACKAGES, suite)
    return tarball


def install_bench_plumbing(tree: Path) -> None:
    """What both images get: no snapshot in sshd's start path, bench-logs.service."""
    (tree / "etc/systemd/system/ssh.service.d/e2e-snapshot.conf").unlink()
    script = tree / "usr/local/sbin/bench-logs"
    script.write_text(LOGS_SCRIPT)
    script.chmod(0o755)
    (tree / "etc/systemd/system/bench-logs.service").write_text(LOGS_UNIT)
    image.systemctl(tree, "enable", "bench-logs.service")


def install_cloud_init_plumbing(tree: Path) -> None:
    install_bench_plumbing(tree)
    cfg = tree / "etc/cloud/cloud.cfg.d/90-bench-azure.cfg"
    cfg.write_text(CLOUD_CFG)
    dhclient = tree / "etc/dhcp/dhclient.conf"
    dhclient.write_text(dhclient.read_text() + DHCLIENT_ROUTER)
    dropin = tree / "etc/systemd/system/cloud-init-local.service.d/50-bench-nftables.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(LOCAL_AFTER_NFTABLES)


def build_cloud_init_image(
    out: Path, customize: Optional[Callable[[Path], None]] = None
) -> BootFiles:
    """The cloud-init image: its rootfs, the tests' plumbing, the plumbing above."""
    tarball = cloud_init_rootfs()
    with tempfile.TemporaryDirectory(prefix="azprov-bench-tree-", dir=out) as tmp:
        tree = Path(tmp) / "root"
        image.unpack(tarball, tree)
        image.install_plumbing(tree)
        install_cloud_init_plumbing(tree)
        if customize is not None:
            customize(tree)
        kernel, initrd = image.boot_files(tree, out)
        disk = out / "pristine.img"
        image.make_disk(tree, disk)
    return BootFiles(disk, kernel, initrd)


if __name__ == "__main__":  # build (or find) the cached rootfs: `python bench/pps_image.py`
    print(cloud_init_rootfs())
