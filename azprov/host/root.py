"""The target root: every path azprov touches and every command it runs goes through it.

With the root `/` azprov changes the running system. With any other root
(a test's temporary directory, `azprov simulate`, a mounted image) it writes
only below that directory, runs `useradd --prefix` / `systemctl --root`, and
skips live actions (hostnamectl, reloading sshd, DHCP renew) with a log line.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from azprov.errors import HostError, one_line
from azprov.host.confined import Confined

log = logging.getLogger(__name__)

# Commands run with a fixed, minimal environment: no proxies, a C locale for
# parseable messages, and a PATH that finds the sbin tools.
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV = {
    "PATH": COMMAND_PATH,
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}


class TargetRoot(Confined):
    """The filesystem tree azprov provisions: `/` for the running system.

    Every read, listing and write of a file in it goes through the methods it
    inherits from `Confined` (`read`, `listdir`, `glob`, `write`, …), which never
    leave the tree; `root / path` only names a file to a tool.
    """

    def __init__(self, path: str | os.PathLike[str] = "/") -> None:
        super().__init__(path)
        # `//`, a symlink to / or a bind mount of it is still the running system.
        try:
            self.live = os.path.samefile(self.path, "/")
        except OSError:
            self.live = self.path == Path("/")
        if self.live:
            self.path = Path("/")
        # (tool, seconds) of every command run, for the run's account of its time.
        self.command_times: list[tuple[str, float]] = []

    def __repr__(self) -> str:
        return f"TargetRoot({str(self.path)!r})"

    def __truediv__(self, absolute: str) -> Path:
        """`root / "/etc/hostname"` -> the file inside the root.

        For an offline root the path must stay inside it once symlinks are
        resolved: an image whose /etc/sudoers.d is a link to the host's must
        not make azprov write on the host.
        """
        relative = os.path.normpath("/" + absolute).lstrip("/")
        joined = self.path / relative if relative else self.path
        if relative and not self.contains(joined):
            real = os.path.join(os.path.realpath(joined.parent), joined.name)
            raise HostError(
                f"{absolute} in the target root {self.path} leads outside it (to {real})",
                path=absolute,
            )
        return joined

    def contains(self, path: Path) -> bool:
        """True when `path` stays inside the root once its directories' symlinks are
        resolved. The last component is not resolved: writes replace it by rename
        and opens use O_NOFOLLOW, so a link there is never followed."""
        if self.live:
            return True
        real = os.path.join(os.path.realpath(path.parent), path.name)
        base = str(self.path)
        return real == base or real.startswith(base.rstrip(os.sep) + os.sep)

    def outside_view(self, inside: Path) -> str:
        """How a path under the root looks from inside it (`/etc/hostname`)."""
        return "/" + str(inside.relative_to(self.path)) if inside != self.path else "/"

    def skip_live(self, action: str) -> bool:
        """True (and say so) when `action` must not run because this is not the live system."""
        if self.live:
            return False
        log.info("skipping %s: the target root is %s, not the running system", action, self.path)
        return True

    def prefix_args(self) -> list[str]:
        """`--prefix ROOT` for the shadow tools (useradd, usermod) when not live."""
        return [] if self.live else ["--prefix", str(self.path)]

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        root_args = [] if self.live else [f"--root={self.path}"]
        return self.run(["systemctl", *root_args, *args], what=f"systemctl {args[0]}", check=check)

    @staticmethod
    def has_tool(name: str) -> bool:
        return shutil.which(name, path=_ENV["PATH"]) is not None

    def start(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start a system tool in the background (same environment as `run`)."""
        log.debug("starting %s", " ".join(argv))
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_ENV,
            )
        except FileNotFoundError:
            raise HostError(f"{argv[0]} is not installed", tool=argv[0]) from None

    def run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        stdin: bytes | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a system tool. Secrets go through `stdin`, never argv; stdin is never logged."""
        log.debug("running %s", " ".join(argv))
        started = time.monotonic()
        try:
            result = subprocess.run(
                list(argv),
                input=stdin if stdin is not None else b"",
                capture_output=True,
                env=_ENV,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise HostError(f"{what}: {argv[0]} is not installed", tool=argv[0]) from None
        except subprocess.TimeoutExpired:
            raise HostError(
                f"{what}: {argv[0]} did not finish in {timeout:g} s", tool=argv[0]
            ) from None
        finally:
            self.command_times.append((os.path.basename(argv[0]), time.monotonic() - started))
        if check and result.returncode != 0:
            detail = one_line(result.stderr.decode("utf-8", "replace"))[-300:]
            raise HostError(
                f"{what}: {argv[0]} exited with status {result.returncode}: {detail or 'no message'}",
                tool=argv[0],
                status=result.returncode,
            )
        return result
