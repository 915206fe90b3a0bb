"""Running one handler command: its own process group, a timeout, output kept.

The command runs as the platform agent runs it: the manifest's command
string, relative to the handler folder (a leading `/` stripped), with the
folder joined in front, through `/bin/sh -c` from the handler folder. So
`sample.py -install` runs `<folder>/sample.py -install` (never a program
found on PATH) and the script's own shebang, even a relative one such as
`#!./python.sh`, picks its interpreter. It runs in a new session, so on
timeout the whole tree it started is killed with one signal.
stdout and stderr are appended to `<log_dir>/<Name>/commands.{stdout,stderr}.log`
(all of it), opened without following a link in a folder the caller opened
through the door; the tail of each goes into the status message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Optional

from azprov import errors
from azprov.errors import UnsafePath
from azprov.timestamps import utc_timestamp

log = logging.getLogger(__name__)

TAIL_BYTES = 1600  # per stream; both fit the ~3200 characters a status message carries


@dataclasses.dataclass(frozen=True)
class CommandResult:
    command: str  # install | enable | disable | update | uninstall
    exit_code: int | None  # None when it was killed on timeout
    timeout: float
    seconds: float
    output: str  # "[stdout]\n…\n\n[stderr]\n…", tails only, secrets scrubbed

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.exit_code is None:
            return f"{self.command} timed out after {self.timeout:g} s and was killed"
        if self.exit_code == 0:
            return f"{self.command} succeeded"
        return f"{self.command} failed with exit code {self.exit_code}"


class CommandFailed(errors.CommandFailed):
    """A handler command exited non-zero or timed out; `result` has its output tails."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(result.describe())
        self.result = result


def _output_file(dir_fd: int, name: str) -> int:
    """`name` in the open log folder, for appending: never through a link, never a FIFO
    or device (the handler can write in that folder too)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{name} in the handler's log folder is not a regular file", path=name)
    os.set_blocking(fd, True)
    return fd


def shell_command(handler_dir: Path, command: str) -> str:
    """The `/bin/sh -c` text for a manifest command: the handler folder joined in front."""
    return f"{shlex.quote(str(handler_dir))}/{command.strip().lstrip('/')}"


def _tail(fd: int, start: int) -> str:
    """The last TAIL_BYTES written since `start`, or of the whole file if it was truncated.

    Published loggers reopen /dev/stdout for every line, which truncates the
    file: it may now be shorter than where this command's output began.
    """
    end = os.fstat(fd).st_size
    begin = max(start if end >= start else 0, end - TAIL_BYTES)
    data = os.pread(fd, end - begin, begin)
    return data.decode("utf-8", "replace")


def run_command(
    command: str,
    manifest_command: str,
    *,
    handler_dir: Path,
    log_dir: int,
    env: Mapping[str, str],
    timeout: float,
    scrub: Callable[[str], str],
) -> CommandResult:
    """Run the manifest's command for `command` (install, …); wait at most `timeout` s.
    `log_dir` is a descriptor of the handler's log folder."""
    line = shell_command(handler_dir, manifest_command)
    stamp = utc_timestamp()
    header = f"--- {stamp} {handler_dir.name} {command} (timeout {timeout:g} s) ---\n".encode()
    out_fd = _output_file(log_dir, "commands.stdout.log")
    try:
        err_fd = _output_file(log_dir, "commands.stderr.log")
    except BaseException:
        os.close(out_fd)
        raise
    try:
        for fd in (out_fd, err_fd):
            os.write(fd, header)
        starts = (os.fstat(out_fd).st_size, os.fstat(err_fd).st_size)
        log.info("%s: running %s (%s), timeout %g s", handler_dir.name, command, line, timeout)
        began = time.monotonic()
        exit_code = _wait_for(line, handler_dir, env, (out_fd, err_fd), timeout)
        seconds = time.monotonic() - began
        output = f"[stdout]\n{scrub(_tail(out_fd, starts[0]))}\n\n[stderr]\n{scrub(_tail(err_fd, starts[1]))}"
    finally:
        os.close(out_fd)
        os.close(err_fd)
    result = CommandResult(command, exit_code, timeout, seconds, output)
    level = logging.INFO if result.ok else logging.WARNING
    log.log(level, "%s: %s in %.1f s", handler_dir.name, result.describe(), seconds)
    return result


def _wait_for(
    line: str, cwd: Path, env: Mapping[str, str], outputs: tuple[int, int], timeout: float
) -> Optional[int]:
    """Run `line` with /bin/sh; its exit code, or None when it ran out of time (then its
    whole process group is killed)."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", line],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=outputs[0],
        stderr=outputs[1],
        start_new_session=True,  # its own process group: killed as one on timeout
        close_fds=True,
    )
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
