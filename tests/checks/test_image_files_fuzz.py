"""Fuzzing the files `azprov check` reads from an image (issue 15, item 5).

For each area (fstab and mount units, networkd, NetworkManager, ifupdown, ifcfg,
udev rules, grub.cfg and BLS, /etc/default/grub, modprobe.d, accounts and sudoers,
dpkg and apt, cloud.cfg, chrony, presets and drop-ins, the KVP pool, the kernel
config, identity files, homes) the files are seeded with what real Debian, Fedora and
RHEL images hold and then made hostile: a field replaced by an edge value, a
line repeated thousands of times or stretched to hundreds of kilobytes, NUL
bytes, invalid UTF-8, control characters, separators dropped, the document
repeated or cut, or arbitrary bytes. The property, for the area's readers and
for every check that reads the files: a value, or azprov's own typed error that
the check turns into an `unknown:` finding; never another exception, within the
deadline. `test_a_megabyte_of_each_file_is_read_in_linear_time` times a 1 MiB
file of each area (16 MiB with AZPROV_FUZZ_PROFILE=long). The whole-`check`
property is in test_image_tree_fuzz.py.

The Hypothesis profile is the fuzz stage's (tests/fuzz/conftest.py), derandomized
in CI. The longer run, twenty times the examples and 16 MiB files:

    AZPROV_FUZZ_PROFILE=long .venv/bin/python -m pytest -p no:cacheprovider \\
        tests/checks/test_image_files_fuzz.py tests/checks/test_image_tree_fuzz.py
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shlex
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.fuzz.conftest  # noqa: F401  (registers the fuzz stage's `ci` and `long` profiles)
from azprov.checks import (
    REGISTRY,
    Tree,
    accounts,
    bootcfg,
    kernel,
    modprobe,
    netconfig,
    network,
    packages,
    services,
    storage,
    systemd,
)
from azprov.checks.bootcfg import shell_words
from azprov.checks.model import Finding
from azprov.checks.nicconfig import glob_matches
from azprov.checks.tree import READ_CAP
from azprov.host.kvp import encode_record
from azprov.host.root import TargetRoot
from tests.checks.trees import KVER, UNIT, good_tree, systemctl, unit, write
from tests.fuzz.hostile import PROFILE, hostile_text, typed_outcome

DEADLINE = timedelta(seconds=3)
# What one example's file may grow to: big enough for thousands of entries and a
# line of hundreds of kilobytes, small enough for a few hundred examples in seconds.
EXAMPLE_BYTES = 128 << 10

# -- real files' shapes ------------------------------------------------------------------------

UUID = "3c0f6a57-1d2b-4a47-9e54-8b1d2f6e9a10"
# Debian 12's installer: root by UUID, the ESP, the CD drive, swap.
FSTAB_DEBIAN = f"""# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID={UUID} /               ext4    errors=remount-ro 0       1
UUID=B2F1-7C3A  /boot/efi       vfat    umask=0077      0       1
UUID=0d1e2f30-4a5b-6c7d-8e9f-a0b1c2d3e4f5 none            swap    sw              0       0
/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0
"""
# Fedora's anaconda: btrfs subvolumes, /boot and the ESP.
FSTAB_FEDORA = f"""UUID={UUID} /                       btrfs   subvol=root,compress=zstd:1 0 0
UUID=5d6e7f80-9a0b-4c1d-8e2f-3a4b5c6d7e8f /boot                   ext4    defaults        1 2
UUID=6A1B-2C3D          /boot/efi               vfat    umask=0077,shortname=winnt 0 2
UUID={UUID} /home                   btrfs   subvol=home,compress=zstd:1 0 0
"""
MOUNT_UNIT = """[Unit]
Description=Data disk
[Mount]
What=/dev/disk/by-uuid/7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b
Where=/data
Type=xfs
Options=defaults,nofail
[Install]
WantedBy=multi-user.target
"""
SWAP_UNIT = "[Unit]\nDescription=Swap file\n[Swap]\nWhat=/swapfile\nPriority=10\n"
NETWORKD = """[Match]
Name=eth0
Driver=hv_netvsc

[Network]
DHCP=ipv4
LinkLocalAddressing=no

[DHCPv4]
UseDomains=true
RouteMetric=100
"""
NETWORKD_LINK = "[Match]\nMACAddress=00:0d:3a:12:34:56\n\n[Link]\nName=eth0\n"
# A keyfile as nmcli writes it for the image's wired profile.
NM_KEYFILE = """[connection]
id=Wired connection 1
uuid=8d2b7c1e-4f3a-4e6b-9c0d-1a2b3c4d5e6f
type=ethernet
autoconnect-priority=-999
interface-name=eth0

[ethernet]
mac-address=00:0D:3A:12:34:56

[ipv4]
method=auto
dhcp-timeout=300

[ipv6]
addr-gen-mode=default
method=auto

[proxy]
"""
NM_CONF = """[main]
plugins=ifupdown,keyfile
no-auto-default=*

[ifupdown]
managed=false

[keyfile]
unmanaged-devices=driver:mlx4_core;driver:mlx5_core;driver:mana
"""
NM_DROPIN = "[connection]\nipv4.dhcp-timeout=300\n"
INTERFACES = """source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
iface eth0 inet6 manual
"""
DHCLIENT = """option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
send host-name = gethostname();
request subnet-mask, broadcast-address, time-offset, routers,
\tdomain-name, domain-name-servers, domain-search, host-name,
\trfc3442-classless-static-routes, ntp-servers, interface-mtu;
timeout 300;
"""
# What RHEL's Azure images carry.
IFCFG = """DEVICE=eth0
ONBOOT=yes
BOOTPROTO=dhcp
TYPE=Ethernet
USERCTL=no
PEERDNS=yes
IPV6INIT=no
NM_CONTROLLED=yes
DHCP_HOSTNAME="localhost"
"""
UDEV_PERSISTENT = (
    'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="00:0d:3a:12:34:56",'
    ' ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"\n'
)
UDEV_AZURE = """# Accelerated Networking: the VF is bonded by the kernel, not configured.
SUBSYSTEM=="net", DRIVERS=="mlx5_core", ENV{NM_UNMANAGED}="1"
ACTION=="add", SUBSYSTEM=="block", KERNEL=="sd*", ATTR{device/timeout}="300"
SUBSYSTEM=="ptp", ATTR{clock_name}=="hyperv", SYMLINK += "ptp_hyperv"
SUBSYSTEM=="block", ENV{DEVTYPE}=="disk", SYMLINK+="disk/azure/root"
"""
# A grub-mkconfig grub.cfg of Debian 12, the parts the check looks at.
GRUB_DEBIAN = f"""### BEGIN /etc/grub.d/00_header ###
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${{next_entry}}" ] ; then
   set default="${{next_entry}}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi
terminal_input console serial
serial --speed=115200
### BEGIN /etc/grub.d/10_linux ###
function gfxmode {{
\tset gfxpayload="${{1}}"
}}
set linux_gfx_mode=
export linux_gfx_mode
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class os $menuentry_id_option 'gnulinux-simple-{UUID}' {{
\tload_video
\tinsmod gzio
\tif [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
\tinsmod part_gpt
\tinsmod ext2
\tsearch --no-floppy --fs-uuid --set=root {UUID}
\techo\t'Loading Linux {KVER} ...'
\tlinux\t/boot/vmlinuz-{KVER} root=UUID={UUID} ro console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300
\techo\t'Loading initial ramdisk ...'
\tinitrd\t/boot/initrd.img-{KVER}
}}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-{UUID}' {{
\tmenuentry 'Debian GNU/Linux, with Linux {KVER} (recovery mode)' {{
\t\tlinux\t/boot/vmlinuz-{KVER} root=UUID={UUID} ro single
\t}}
}}
"""
DEFAULT_GRUB = """GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 rootdelay=300"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
"""
GRUB_D = 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT net.ifnames=0 console=ttyS0"\n'
FEDORA_KVER = "6.5.6-300.fc39.x86_64"
# Fedora's grub2-mkconfig: blscfg builds the menu from boot/loader/entries.
GRUB_BLS = """set pager=1
if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="0"
fi
insmod blscfg
blscfg
"""
GRUBENV = (
    "# GRUB Environment Block\n"
    f"saved_entry=0a1b2c3d4e5f60718293a4b5c6d7e8f9-{FEDORA_KVER}\n"
    f"kernelopts=root=UUID={UUID} ro console=tty1 console=ttyS0,115200n8\n"
    "boot_success=0\n"
)
GRUBENV = GRUBENV + "#" * (1024 - len(GRUBENV))
BLS_ENTRY = f"""title Fedora Linux ({FEDORA_KVER}) 39 (Cloud Edition)
version {FEDORA_KVER}
linux /boot/vmlinuz-{FEDORA_KVER}
initrd /boot/initramfs-{FEDORA_KVER}.img
options root=UUID={UUID} ro rootflags=subvol=root no_timer_check net.ifnames=0 console=tty1 console=ttyS0,115200n8
grub_users $grub_users
grub_arg --unrestricted
grub_class fedora
"""
MODPROBE = """# Hardening: file systems and devices nobody uses here.
blacklist floppy
blacklist nouveau
install cramfs /bin/false
install udf /bin/true
options hv_netvsc ring_size=1024
alias net-pf-10 off
"""
PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
packer:x:1000:1000:Packer build,,,:/home/packer:/bin/bash
"""
SHADOW = """root:*:19722:0:99999:7:::
daemon:*:19722:0:99999:7:::
nobody:*:19722:0:99999:7:::
packer:$6$rounds=5000$abcdefgh$Q1w2E3r4T5y6U7i8O9p0:19722:0:99999:7:::
"""
LOGIN_DEFS = "MAIL_DIR\t/var/mail\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\nSYS_UID_MAX\t\t  999\n"
SUDOERS = """Defaults\tenv_reset
Defaults\tmail_badpass
Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Defaults\tuse_pty
root\tALL=(ALL:ALL) ALL
%sudo\tALL=(ALL:ALL) ALL
@includedir /etc/sudoers.d
"""
SUDOERS_DROPIN = "packer ALL=(ALL) NOPASSWD:ALL\n#include /etc/sudoers.local\n"
DPKG_STATUS = """Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 2186
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@lists.example.org>
Architecture: amd64
Version: 3.0.15-1~deb12u1
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.9)
Conffiles:
 /etc/ssl/openssl.cnf 7d1a0b6f2c3e4d5f6a7b8c9d0e1f2a3b
Description: the OpenSSL command line tool
 A command line program to make keys and certificates.
 .
 A second paragraph.

Package: omi
Status: install ok installed
Architecture: amd64
Version: 1.6.8.1

Package: walinuxagent
Status: deinstall ok config-files
Architecture: all
Version: 2.2.45-1
"""
APT_SOURCES = """deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""
# Debian 12's cloud images write deb822 sources.
APT_DEB822 = """Types: deb deb-src
URIs: mirror+file:///etc/apt/mirrors/debian.list
Suites: bookworm bookworm-updates bookworm-backports
Components: main

Types: deb deb-src
URIs: mirror+file:///etc/apt/mirrors/debian-security.list
Suites: bookworm-security
Components: main
"""
SELINUX = "SELINUX=enforcing\nSELINUXTYPE=targeted\n"
CLOUD_CFG = """users:
   - default
disable_root: true
datasource_list:
  - Azure
  - None
cloud_init_modules:
 - seed_random
 - bootcmd
"""
CLOUD_CFG_D = (
    "# written by dpkg-reconfigure\ndatasource_list: [ NoCloud, ConfigDrive, Azure, None ]\n"
)
CHRONY = """confdir /etc/chrony/conf.d
pool 2.debian.pool.ntp.org iburst
sourcedir /run/chrony-dhcp
sourcedir /etc/chrony/sources.d
keyfile /etc/chrony/chrony.keys
driftfile /var/lib/chrony/chrony.drift
logdir /var/log/chrony
maxupdateskew 100.0
rtcsync
makestep 1.0 -1
refclock PHC /dev/ptp_hyperv poll 3 dpoll -2 offset 0 stratum 2
"""
PRESET = """# Units started by default.
enable remote-fs.target
enable getty@.service
enable sshd.service
enable chronyd.service
enable azure-provisioning.service
disable cloud-init*.service
disable *
"""
DROPIN = """[Unit]
Wants=network-online.target
After=network-online.target
[Service]
Environment="AZPROV_LOG=debug"
"""
KVP_POOL = encode_record("PROVISIONING_REPORT", "result=success|agent=azprov") + encode_record(
    "VmDiagnostics", "x" * 100
)
KERNEL_CONFIG = """#
# Automatically generated file; DO NOT EDIT.
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"
CONFIG_LOCALVERSION=""
# CONFIG_BLK_DEV_FD is not set
CONFIG_HYPERV=m
CONFIG_HYPERV_STORAGE=m
CONFIG_HYPERV_NET=m
CONFIG_HYPERV_UTILS=m
CONFIG_HYPERV_BALLOON=m
CONFIG_HYPERV_KEYBOARD=m
CONFIG_HID_HYPERV_MOUSE=m
CONFIG_WATCHDOG=y
CONFIG_CIFS=m
CONFIG_BLK_DEV_NVME=m
CONFIG_UDF_FS=m
CONFIG_ISO9660_FS=m
CONFIG_BLK_DEV_SR=m
CONFIG_VFAT_FS=m
CONFIG_ATA_PIIX=m
CONFIG_CMDLINE="console=ttyS0"
"""
AUTHORIZED_KEYS = (
    "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as"
    ' the user \\"azureuser\\" rather than the user \\"root\\".\';echo;sleep 10;exit 142"'
    " ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q root@build\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q packer@ci\n"
)
BASH_HISTORY = "sudo apt-get update\nexport TOKEN=redacted\nhistory -c\n"
RESOLV_CONF = (
    "# Generated by NetworkManager\nsearch reddog.microsoft.com\nnameserver 168.63.129.16\n"
)
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\n"


# -- the areas ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Area:
    """Files a part of `check` reads (tree path: a real file's content), the readers
    that parse them and the checks that use them; `setup` makes the tree reach them."""

    name: str
    files: dict[str, str | bytes]
    readers: tuple[Callable[[Tree], object], ...]
    checks: tuple[str, ...]
    setup: Callable[[Path], None] = lambda root: None


def _kernel_config(tree: Tree) -> object:
    kernel.default_kernel(tree)
    return kernel.kernel_config(tree)


def _uses_bls(root: Path) -> None:
    (root / "boot/grub/grub.cfg").unlink()


def _cloud_init(root: Path) -> None:
    unit(root, "cloud-init.service")
    systemctl(root, "enable", "cloud-init.service")


def _homes(root: Path) -> None:
    for home in ("root/.ssh", "home/packer/.ssh"):
        (root / home).mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text(PASSWD)


def _resolv_conf(root: Path) -> None:
    (root / "etc/resolv.conf").unlink()


def _unit_settings(tree: Tree) -> object:
    return systemd.unit_settings(tree, UNIT), systemd.preset_for(tree, UNIT)


NET_CHECKS = ("net-dhcp-configured", "net-config-not-pinned", "net-vf-unmanaged", "dhcp-timeout")
BOOT_CHECKS = (
    "grub-forbidden-params",
    "serial-console",
    "cmdline-recommended",
    "swap-os-disk",
    "modprobe-policy",
    "prov-agent-conflict",
)
ACCOUNT_CHECKS = (
    "passwords-locked",
    "leftover-users-sudoers",
    "sudo-policy",
    "shell-history",
    "cloud-cli-credentials",
)

AREAS = (
    Area(
        "fstab",
        {
            "etc/fstab": FSTAB_DEBIAN,
            "etc/systemd/system/data.mount": MOUNT_UNIT,
            "etc/systemd/system/swapfile.swap": SWAP_UNIT,
        },
        (storage.fstab, lambda tree: list(storage._mount_units(tree))),
        ("fstab-boot-safe", "lvm-devices-file", "swap-os-disk"),
    ),
    Area("fstab-fedora", {"etc/fstab": FSTAB_FEDORA}, (storage.fstab,), ("fstab-boot-safe",)),
    Area(
        "networkd",
        {
            "etc/systemd/network/10-eth0.network": NETWORKD,
            "usr/lib/systemd/network/99-default.link": NETWORKD_LINK,
            "etc/systemd/network/10-eth0.link": NETWORKD_LINK,
        },
        (netconfig.networkd, network.vf_marked_unmanaged),
        NET_CHECKS,
    ),
    Area(
        "networkmanager",
        {
            "etc/NetworkManager/system-connections/eth0.nmconnection": NM_KEYFILE,
            "etc/NetworkManager/NetworkManager.conf": NM_CONF,
            "etc/NetworkManager/conf.d/90-dhcp.conf": NM_DROPIN,
        },
        (netconfig.networkmanager, lambda tree: netconfig.nm_setting(tree, "main", "x")),
        NET_CHECKS,
    ),
    Area(
        "ifupdown",
        {
            "etc/network/interfaces": INTERFACES,
            "etc/network/interfaces.d/eth0": "auto eth0\niface eth0 inet dhcp\n",
            "etc/dhcp/dhclient.conf": DHCLIENT,
        },
        (netconfig.ifupdown,),
        (*NET_CHECKS, "network-online-wait", "hostname-generic"),
    ),
    Area(
        "ifcfg",
        {
            "etc/sysconfig/network-scripts/ifcfg-eth0": IFCFG,
            "etc/sysconfig/network": "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n",
        },
        (netconfig.ifcfg,),
        (*NET_CHECKS, "hostname-generic"),
    ),
    Area(
        "udev",
        {
            "etc/udev/rules.d/75-net.rules": UDEV_PERSISTENT,
            "usr/lib/udev/rules.d/80-azure.rules": UDEV_AZURE,
        },
        (network.vf_marked_unmanaged,),
        ("udev-persistent-net", "net-vf-unmanaged", "waagent-duties", "time-sync-ptp"),
    ),
    Area(
        "grub",
        {
            "boot/grub/grub.cfg": GRUB_DEBIAN,
            "boot/grub/grubenv": GRUBENV,
            "etc/default/grub": DEFAULT_GRUB,
            "etc/default/grub.d/50-cloudimg-settings.cfg": GRUB_D,
        },
        (bootcfg.boot_cmdline, bootcfg.grub_defaults),
        BOOT_CHECKS,
    ),
    Area(
        "grub-bls",
        {
            "boot/grub2/grub.cfg": GRUB_BLS,
            "boot/grub2/grubenv": GRUBENV,
            f"boot/loader/entries/0a1b2c3d4e5f60718293a4b5c6d7e8f9-{FEDORA_KVER}.conf": BLS_ENTRY,
            "boot/loader/entries/0a1b2c3d4e5f60718293a4b5c6d7e8f9-0-rescue.conf": BLS_ENTRY,
        },
        (bootcfg.boot_cmdline,),
        BOOT_CHECKS,
        _uses_bls,
    ),
    Area(
        "modprobe",
        {
            "etc/modprobe.d/hardening.conf": MODPROBE,
            "usr/lib/modprobe.d/50-azure.conf": "blacklist amdgpu\n",
        },
        (modprobe.blocked_modules,),
        ("modprobe-policy",),
    ),
    Area(
        "accounts",
        {
            "etc/passwd": PASSWD,
            "etc/shadow": SHADOW,
            "etc/gshadow-": "root:*::\nsudo:*::packer\n",
            "etc/login.defs": LOGIN_DEFS,
            "etc/sudoers": SUDOERS,
            "etc/sudoers.d/admins": SUDOERS_DROPIN,
        },
        (accounts.users, accounts.uid_range, accounts.sudoers_files),
        ACCOUNT_CHECKS,
    ),
    Area(
        "packages",
        {
            "var/lib/dpkg/status": DPKG_STATUS,
            "etc/apt/sources.list": APT_SOURCES,
            "etc/apt/sources.list.d/debian.sources": APT_DEB822,
            "etc/selinux/config": SELINUX,
        },
        (packages.dpkg_versions,),
        ("package-currency", "selinux-labels"),
    ),
    Area(
        "cloud-init",
        {"etc/cloud/cloud.cfg": CLOUD_CFG, "etc/cloud/cloud.cfg.d/90_dpkg.cfg": CLOUD_CFG_D},
        (services._cloud_init_allows_azure,),
        ("prov-agent-conflict",),
        _cloud_init,
    ),
    Area(
        "chrony",
        {
            "etc/chrony/chrony.conf": CHRONY,
            "etc/chrony/sources.d/azure.sources": "refclock PHC /dev/ptp0 poll 3\n",
        },
        (),
        ("time-sync-ptp",),
    ),
    Area(
        "systemd",
        {
            "usr/lib/systemd/system-preset/90-default.preset": PRESET,
            "etc/systemd/system-preset/80-azure.preset": "disable azure-provisioning.service\n",
            f"etc/systemd/system/{UNIT}.d/override.conf": DROPIN,
            "etc/machine-id": "uninitialized\n",
        },
        (_unit_settings, systemd.first_boot),
        ("prov-unit-enabled", "network-online-wait"),
    ),
    Area("kvp", {"var/lib/hyperv/.kvp_pool_1": KVP_POOL}, (), ("agent-state-leftover",)),
    Area(
        "kernel",
        {f"boot/config-{KVER}": KERNEL_CONFIG},
        (_kernel_config,),
        ("hyperv-drivers-initramfs", "modprobe-policy"),
    ),
    Area(
        "identity",
        {
            "etc/hostname": "localhost\n",
            "etc/hosts": HOSTS,
            "etc/machine-id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9\n",
            "etc/machine-info": 'PRETTY_HOSTNAME="build"\n',
            "var/lib/dbus/machine-id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9\n",
            "etc/resolv.conf": RESOLV_CONF,
        },
        (),
        ("machine-id", "hostname-generic", "dhcp-dns-leftovers"),
        _resolv_conf,
    ),
    Area(
        "homes",
        {
            "root/.ssh/authorized_keys": AUTHORIZED_KEYS,
            "home/packer/.ssh/authorized_keys": AUTHORIZED_KEYS,
            "home/packer/.bash_history": BASH_HISTORY,
            "root/.config/.history": BASH_HISTORY,
        },
        (),
        ("authorized-keys", "shell-history"),
        _homes,
    ),
)


def every_stack(root: Path) -> Path:
    """The good tree with every network manager enabled and a first boot ahead, so that
    each area's readers are reached (the good tree enables networkd alone)."""
    good_tree(root)
    stacks = (
        "NetworkManager.service",
        "NetworkManager-wait-online.service",
        "networking.service",
        "network.service",
    )
    for name in stacks:
        unit(root, name)
    systemctl(root, "enable", *stacks)
    write(root, "etc/machine-id", "uninitialized\n")
    return root


# -- hostile variations ------------------------------------------------------------------------

# Values on the edge of what these formats' readers take: numbers int() takes and
# isdigit() claims (or not), separators, quoting, globs, includes, and line ends that
# str.splitlines() splits and the programs reading the file do not.
EDGES = st.sampled_from(
    [
        "",
        "²",
        "٣٠٠",
        "１",
        "9" * 5000,
        "-1",
        "0x1f",
        "017",
        "=",
        "==",
        ":",
        "::",
        "#",
        ";",
        ",",
        "[",
        "]",
        "[[]]",
        "{",
        "}",
        "\\",
        '"',
        "'",
        "*",
        "?",
        "[!",
        "[z-a]",
        "${x}",
        "$",
        "`",
        "\0",
        "\r",
        "\t",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x85",
        "\u2028",
        "\ufeff",
        "\U0010ffff",
        "x" * 4096,
        "eth0",
        "hv_netvsc",
        "mlx5_core",
        "dhcp",
        "yes",
        "auto",
        "/dev/sda1",
        "/dev/mapper/vg-root",
        "/",
        "swap",
        "UUID=",
        "#include",
        "@includedir",
        "/etc/sudoers.d",
        "blscfg",
        "linux",
        "set default=",
        "enable",
        "disable",
        "blacklist",
        "install",
        "console=ttyS0",
        "root",
        "timeout",
        "refclock",
        "datasource_list:",
    ]
)
# What may stand where a number is: digits int() refuses or takes slowly, signs, bases.
NUMBERS = st.sampled_from(
    [
        "²",
        "٣٠٠",
        "１",
        "9" * 5000,
        "0" * 5000 + "1",
        "-1",
        "+1",
        "0x1f",
        "017",
        "1e9",
        "1_0",
        "4294967296",
        "18446744073709551616",
        "",
        " ",
        "NaN",
    ]
)
RAW_BYTES = st.sampled_from(
    [b"\0", b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x80", b"\r\n"]
)
_PIECES = re.compile(rb"([\s=:,;\[\]\"']+)")
_SEPARATORS = re.compile(rb"[\s=:,;\[\]]")


def _token(draw: st.DrawFn) -> bytes:
    text = draw(st.one_of(EDGES, hostile_text(24)))
    return text.encode("utf-8", "surrogatepass") if draw(st.booleans()) else draw(RAW_BYTES)


def _times(draw: st.DrawFn, unit_bytes: int) -> int:
    small = st.integers(2, 50)
    wanted = draw(st.one_of(small, small, st.sampled_from([1_000, 10_000, 100_000])))
    return max(1, min(wanted, EXAMPLE_BYTES // max(unit_bytes, 1)))


@st.composite
def hostile_file(draw: st.DrawFn, real: str | bytes) -> bytes:
    """`real` with a few hostile edits, or arbitrary bytes instead."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = real.encode() if isinstance(real, str) else real
    lines = data.split(b"\n")
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(lines) - 1))
        edit = draw(
            st.sampled_from(
                [
                    "field",
                    "field",
                    "numbers",
                    "insert",
                    "repeat",
                    "stretch",
                    "separators",
                    "raw",
                    "whole",
                ]
            )
        )
        if edit == "field":
            pieces = _PIECES.split(lines[at])
            numbers = [i for i, piece in enumerate(pieces) if piece.isdigit()]
            at_a_number = draw(st.booleans())  # numbers are where parsers convert
            if numbers and at_a_number:
                spot = draw(st.sampled_from(numbers))
                pieces[spot] = draw(NUMBERS).encode()
            else:
                spot = draw(st.integers(0, len(pieces) - 1))
                pieces[spot] = _token(draw)
            lines[at] = b"".join(pieces)
        elif edit == "numbers":  # every number of the line at once
            number = draw(NUMBERS).encode()
            pieces = _PIECES.split(lines[at])
            lines[at] = b"".join(number if piece.isdigit() else piece for piece in pieces)
        elif edit == "insert":
            line = b" ".join(_token(draw) for _ in range(draw(st.integers(1, 4))))
            lines.insert(at, line)
        elif edit == "repeat":
            lines[at : at + 1] = [lines[at]] * _times(draw, len(lines[at]) + 1)
        elif edit == "stretch":
            tail = lines[at][-draw(st.integers(1, 16)) :] or _token(draw) or b"x"
            lines[at] += tail * _times(draw, len(tail))
        elif edit == "separators":
            lines[at] = _SEPARATORS.sub(b"", lines[at])
        elif edit == "raw":
            cut = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:cut] + _token(draw) + lines[at][cut:]
        else:  # the whole document repeated: sections and entries again and again
            lines = lines * _times(draw, sum(len(line) + 1 for line in lines))
    data = b"\n".join(lines)
    if draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


# -- running an area ---------------------------------------------------------------------------


# The long run's examples per CI example: the fuzz stage's own long run repeats only
# its targets under tests/fuzz until their time is spent; these are scaled here.
LONG_RUN_FACTOR = 20


def fuzzed(ci_examples: int) -> Callable[[Any], Any]:
    """The fuzz stage's profile for a property (derandomized in CI), with
    LONG_RUN_FACTOR times the examples under AZPROV_FUZZ_PROFILE=long."""
    scale = 1 if PROFILE == "ci" else LONG_RUN_FACTOR
    return settings(
        settings.get_profile(PROFILE), max_examples=ci_examples * scale, deadline=DEADLINE
    )


def place(root: Path, relative: str, data: bytes | None) -> None:
    """Give a tree file this content (None: no such file)."""
    path = root / relative
    if data is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run_area(area: Area, root: Path) -> list[Finding]:
    """The area's readers (a value or a typed error) and its checks (findings, nothing raised)."""
    tree = Tree(TargetRoot(root))
    for reader in area.readers:
        typed_outcome(reader, tree)
    found: list[Finding] = []
    for check_id in area.checks:
        found += REGISTRY[check_id].findings(tree)
    return found


@pytest.fixture(scope="module")
def area_trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A tree per area: every stack enabled, the area's setup done, its files as real ones."""
    base = every_stack(tmp_path_factory.mktemp("fuzz") / "base")
    trees = {}
    for area in AREAS:
        root = base.parent / area.name
        shutil.copytree(base, root, symlinks=True)
        area.setup(root)
        for relative, real in area.files.items():
            place(root, relative, real.encode() if isinstance(real, str) else real)
        trees[area.name] = root
    yield trees
    shutil.rmtree(base.parent)


def test_the_real_files_give_findings_in_every_area(area_trees: dict[str, Path]) -> None:
    """The seeds are read as what they are: no area starts from `unknown:`."""
    for area in AREAS:
        for finding in run_area(area, area_trees[area.name]):
            assert "check itself failed" not in finding.found, (area.name, finding)


AREA_FILES = [(area, relative) for area in AREAS for relative in area.files]


@pytest.mark.parametrize(
    ("area", "target"), AREA_FILES, ids=[f"{area.name}:{path}" for area, path in AREA_FILES]
)
@fuzzed(12)
@given(data=st.data())
def test_hostile_files_give_findings_or_unknown(
    area_trees: dict[str, Path], area: Area, target: str, data: st.DataObject
) -> None:
    """`target` hostile; the area's other files mostly real (so that the readers get
    as far as `target`), sometimes absent or hostile too."""
    root = area_trees[area.name]
    for relative, real in area.files.items():
        how = "hostile"
        if relative != target:
            how = data.draw(
                st.sampled_from(["real", "real", "real", "hostile", "absent"]), relative
            )
        content: bytes | None = real.encode() if isinstance(real, str) else real
        if how == "hostile":
            content = data.draw(hostile_file(real), relative)
        elif how == "absent":
            content = None
        place(root, relative, content)
    run_area(area, root)


# -- the linear stand-ins agree with what they replace -----------------------------------------


@fuzzed(500)
@given(st.text(alphabet=" \t\r\n'\"\\ab$#=\x0b\0é", max_size=40))
def test_shell_words_splits_as_shlex_does(text: str) -> None:
    try:
        expected: tuple[str, ...] | None = tuple(shlex.split(text))
    except ValueError:
        expected = None
    assert shell_words(text) == expected


@fuzzed(500)
@given(st.text(alphabet="ab-]![*?^\\", max_size=8), st.text(alphabet="ab-]![*?^\\", max_size=6))
def test_glob_matches_as_fnmatch_does(pattern: str, name: str) -> None:
    assert glob_matches(name, pattern) == fnmatch.fnmatchcase(name, pattern)


# -- a megabyte of each ------------------------------------------------------------------------

SIZE = READ_CAP if PROFILE == "long" else 1 << 20
# CPU seconds (not wall time, which a busy CI machine stretches): a linear reader
# takes under half of this for a megabyte of any shape here; a quadratic one, minutes.
SECONDS_PER_MEGABYTE = 2.0


def _megabyte_shapes(real: str | bytes) -> Iterator[tuple[str, bytes]]:
    """The file's own lines many times over and its longest line stretched; in the
    long run also a line again and again, NULs, no line end, digits."""
    data = real.encode() if isinstance(real, str) else real
    yield "the file again and again", (data * (SIZE // len(data) + 1))[:SIZE]
    line = max(data.split(b"\n"), key=len)
    yield "one line stretched", line + line[-8:] * ((SIZE - len(line)) // 8)
    if PROFILE == "long":
        yield "one line again and again", ((line + b"\n") * (SIZE // (len(line) + 1)))[:SIZE]
        yield "NUL bytes", b"\0" * SIZE
        yield "no line ends", bytes(range(32, 127)) * (SIZE // 95)
        yield "digits", b"9" * SIZE


# Shapes that make a reader do the most for each line it reads.
WORST = {
    "etc/sudoers": [
        "#include /etc/sudoers.missing\n",
        "#include /etc/sudoers.d/{n}\n",
        "@includedir /etc/sudoers.d\n",
    ],
    "usr/lib/systemd/system-preset/90-default.preset": [
        "disable x{n}*.service\n",
        "enable unit{n}.service\n",
    ],
    "etc/network/interfaces": ["auto eth{n}\niface eth{n} inet dhcp\n"],
    "etc/passwd": ["u{n}:x:{n}:{n}::/home/u{n}:/bin/sh\n"],
    "etc/systemd/network/10-eth0.network": ["[Match]\nName=eth{n}\n[Network]\nDHCP=yes\n"],
    "boot/grub/grub.cfg": ["set default={n}\n", "\tlinux\t/vmlinuz $x{n} ${{y{n}}}\n"],
    "etc/cloud/cloud.cfg": [
        "datasource_list:\n" + " " * 64 + "\n",
        "datasource_list: [x]\n  - y\n",
    ],
    "var/lib/dpkg/status": ["Package: p{n}\nStatus: install ok installed\nVersion: 1.{n}\n\n"],
}


def _worst_shapes(relative: str) -> Iterator[tuple[str, bytes]]:
    for pattern in WORST.get(relative, []):
        out, n = [], 0
        size = 0
        while size < SIZE:
            line = pattern.format(n=n)
            out.append(line)
            size += len(line)
            n += 1
        yield pattern.strip().split("\n")[0], "".join(out).encode()[:SIZE]


@pytest.fixture
def python39_ints() -> Iterator[None]:
    """int() as on Python 3.9, RHEL 9's: no digit limit, so a long number costs
    quadratic time instead of 3.11's ValueError (which the properties catch)."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: None)()
    if limit is not None:
        sys.set_int_max_str_digits(0)
    yield
    if limit is not None:
        sys.set_int_max_str_digits(limit)


@pytest.mark.usefixtures("python39_ints")
@pytest.mark.parametrize("area", AREAS, ids=[area.name for area in AREAS])
def test_a_megabyte_of_each_file_is_read_in_linear_time(
    area_trees: dict[str, Path], area: Area, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each file of the area, in turn, a megabyte of each shape (the others real):
    the area's readers and checks finish within SECONDS_PER_MEGABYTE. The slowest
    shape's figure is printed (`pytest -s` shows it)."""
    root = area_trees[area.name]
    for relative, real in area.files.items():  # as the hostile examples may have left them
        place(root, relative, real.encode() if isinstance(real, str) else real)
    slowest = (0.0, "", "")
    for relative, real in area.files.items():
        for shape, content in [*_megabyte_shapes(real), *_worst_shapes(relative)]:
            place(root, relative, content)
            started = time.process_time()
            run_area(area, root)
            seconds = time.process_time() - started
            slowest = max(slowest, (seconds, relative, shape))
            assert seconds < SECONDS_PER_MEGABYTE * SIZE / (1 << 20), (relative, shape, seconds)
        place(root, relative, real.encode() if isinstance(real, str) else real)
    with capsys.disabled():
        print(
            f"\n{area.name}: {SIZE >> 20} MiB read in at most {slowest[0]:.3f} s of CPU ({slowest[1]}: {slowest[2]})"
        )
