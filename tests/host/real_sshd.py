"""What the real sshd makes of a tree's /etc/ssh: `sshd -T`, run in a private mount namespace.

The sshd is the one AZPROV_TEST_SSHD names, or Debian's openssh-server as
scripts/setup unpacks it under .cache/sshd, or /usr/sbin/sshd. It reads its
configuration from /etc/ssh as it would on the image: the tree's etc/ssh is bind-mounted there, in a mount namespace of its own (nothing
on this machine changes), with a tmpfs on /run for its privilege separation
directory and, when this machine has no `sshd` user, a passwd file that adds
one. sshd -T also wants one host key it can load: a throwaway one is named
with -h, and left out of what is returned.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import pytest

_SCRIPT = """
set -e
mount --bind "$1" /etc/ssh
if [ -n "$2" ]; then mount --bind "$2" /etc/passwd; fi
mount -t tmpfs tmpfs /run
mkdir /run/sshd
exec "$3" -T -f /etc/ssh/sshd_config -h "$4"
"""


_UNPACKED = str(Path(__file__).resolve().parents[2] / ".cache/sshd/usr/sbin/sshd")


def sshd_binary() -> Optional[str]:
    named = os.environ.get("AZPROV_TEST_SSHD")
    if named:
        return named
    for candidate in (_UNPACKED, "/usr/sbin/sshd"):  # scripts/setup unpacks the first
        if os.path.exists(candidate):
            return candidate
    return None


def available() -> bool:
    return (
        sshd_binary() is not None
        and os.geteuid() == 0
        and shutil.which("unshare") is not None
        and os.path.isdir("/etc/ssh")
    )


needs_sshd = pytest.mark.skipif(
    not available(),
    reason="no sshd (install openssh-server, or set AZPROV_TEST_SSHD) or not root",
)


class RealSshd:
    """Runs `sshd -T` on trees; one throwaway host key for all of them."""

    def __init__(self, workdir: Path) -> None:
        self.key = workdir / "test_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        self.passwd = ""
        if b"\nsshd:" not in b"\n" + Path("/etc/passwd").read_bytes():
            passwd = workdir / "passwd"
            passwd.write_bytes(
                Path("/etc/passwd").read_bytes()
                + b"sshd:x:65500:65534::/run/sshd:/usr/sbin/nologin\n"
            )
            self.passwd = str(passwd)

    def settings(self, tree: Path) -> Optional[dict[str, list[str]]]:
        """keyword -> values as `sshd -T` prints them; None when sshd refuses the
        configuration (it prints why on stderr, and exits non-zero)."""
        binary = sshd_binary()
        assert binary is not None
        mounts = [str(tree / "etc/ssh"), self.passwd, binary, str(self.key)]
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", _SCRIPT, "sh", *mounts],
            capture_output=True,
            cwd="/",  # as under systemd: a relative path in the configuration is under /
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            return None
        found: dict[str, list[str]] = {}
        for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
            keyword, _, value = line.partition(" ")
            found.setdefault(keyword, []).append(value)
        found["hostkey"] = [k for k in found.get("hostkey", []) if k != str(self.key)]
        return found
