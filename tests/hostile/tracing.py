"""Running an azprov command under strace, and reading back every path it touched.

`strace -f -y` follows every thread and child (useradd, systemctl, ssh-keygen…)
and prints each descriptor with the path the kernel says it is: an
`openat(5</t/tree/etc>, "shadow", …) = 6</t/canary/etc/shadow>` shows where a
link really led. `-e abbrev=none` prints the whole stat structure, so a stat that
followed a link into the canary shows by the inode it returns.

Processes are told apart by what they last executed: azprov's own (the Python
interpreter and its threads) and the tools it runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

SYSCALLS = "%file,%process,fchdir"

# Per syscall: (index of the directory-descriptor argument or None, index of the path).
# Only real paths: a readlink's buffer and a symlink's target are contents, not paths.
_PATH_ARGS: dict[str, tuple[tuple[Optional[int], int], ...]] = {
    "openat": ((0, 1),),
    "openat2": ((0, 1),),
    "newfstatat": ((0, 1),),
    "fstatat64": ((0, 1),),
    "statx": ((0, 1),),
    "faccessat": ((0, 1),),
    "faccessat2": ((0, 1),),
    "fchmodat": ((0, 1),),
    "fchownat": ((0, 1),),
    "mkdirat": ((0, 1),),
    "mknodat": ((0, 1),),
    "unlinkat": ((0, 1),),
    "readlinkat": ((0, 1),),
    "utimensat": ((0, 1),),
    "execveat": ((0, 1),),
    "name_to_handle_at": ((0, 1),),
    "renameat": ((0, 1), (2, 3)),
    "renameat2": ((0, 1), (2, 3)),
    "linkat": ((0, 1), (2, 3)),
    "symlinkat": ((1, 2),),
    "rename": ((None, 0), (None, 1)),
    "link": ((None, 0), (None, 1)),
    "symlink": ((None, 1),),
    "mount": ((None, 1),),
}
_ONE_PATH = [
    "open",
    "creat",
    "stat",
    "lstat",
    "access",
    "chdir",
    "chmod",
    "chown",
    "lchown",
    "truncate",
    "mkdir",
    "rmdir",
    "unlink",
    "readlink",
    "statfs",
    "mknod",
    "execve",
    "utime",
    "utimes",
    "getxattr",
    "lgetxattr",
    "setxattr",
    "lsetxattr",
    "listxattr",
    "llistxattr",
    "removexattr",
    "lremovexattr",
    "chroot",
    "umount2",
    "inotify_add_watch",
]
_WRITES = frozenset(
    [
        "creat",
        "truncate",
        "mkdir",
        "mkdirat",
        "rmdir",
        "unlink",
        "unlinkat",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "chmod",
        "fchmodat",
        "chown",
        "lchown",
        "fchownat",
        "mknod",
        "mknodat",
        "utimensat",
        "setxattr",
        "lsetxattr",
        "removexattr",
        "lremovexattr",
    ]
)
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")

_LINE = re.compile(r"^(\d+) +(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\) += (.*)$", re.S)
_FD = re.compile(r"^(?:-?\d+|AT_FDCWD)<(.*)>$", re.S)
_FD_ANYWHERE = re.compile(r"(?:\b\d+|AT_FDCWD)<([^<>]*)>")
_STAT_INODE = re.compile(r"st_dev=makedev\((0x[0-9a-f]+), (0x[0-9a-f]+|0)\), st_ino=(\d+)")
_STATX_INODE = re.compile(r"stx_ino=(\d+),.*?stx_dev_major=(\d+), stx_dev_minor=(\d+)", re.S)


@dataclasses.dataclass
class Syscall:
    """One finished system call of one process."""

    pid: int
    program: str  # what the process last executed
    name: str
    args: list[str]
    result: str
    text: str  # the whole call, to show

    @property
    def failed(self) -> bool:
        return self.result.startswith("-1 ") or self.result == "-1"

    def fd_paths(self) -> list[str]:
        """Every path strace printed for a descriptor (arguments and result)."""
        return [_clean(p) for p in _FD_ANYWHERE.findall(f"{', '.join(self.args)} = {self.result}")]

    def opened(self) -> Optional[str]:
        """For an open that succeeded, the path of the descriptor it returned."""
        if self.name not in ("open", "openat", "openat2", "creat") or self.failed:
            return None
        match = _FD.match(self.result.split(" ", 1)[0])
        return _clean(match.group(1)) if match else None

    def writes(self) -> bool:
        if self.name in _WRITES:
            return True
        flags = self.args[2] if self.name in ("openat", "openat2") and len(self.args) > 2 else ""
        flags = self.args[1] if self.name == "open" and len(self.args) > 1 else flags
        return any(flag in flags for flag in _WRITE_FLAGS)

    def paths(self, cwd: str) -> list[str]:
        """The paths the call names, made absolute (relative ones against their
        directory descriptor, or `cwd`), not resolved: links are the kernel's business."""
        spec = _PATH_ARGS.get(self.name) or (((None, 0),) if self.name in _ONE_PATH else ())
        found = []
        for dir_index, index in spec:
            if index >= len(self.args) or not self.args[index].startswith('"'):
                continue
            path = _unquote(self.args[index])
            base = cwd
            if dir_index is not None and dir_index < len(self.args):
                match = _FD.match(self.args[dir_index])
                base = _clean(match.group(1)) if match else cwd
            if path == "":
                continue  # AT_EMPTY_PATH: the descriptor itself, seen in fd_paths
            found.append(os.path.normpath(os.path.join(base, path)))
        return found

    def inodes(self) -> list[tuple[int, int]]:
        """(device, inode) of what a stat call returned."""
        found = [
            (os.makedev(int(major, 16), int(minor, 16)), int(ino))
            for major, minor, ino in _STAT_INODE.findall(", ".join(self.args))
        ]
        found += [
            (os.makedev(int(major), int(minor)), int(ino))
            for ino, major, minor in _STATX_INODE.findall(", ".join(self.args))
        ]
        return found


def _clean(path: str) -> str:
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def _unquote(quoted: str) -> str:
    body = quoted[1:].split('"')[0] if not quoted.endswith('"') else quoted[1:-1]
    if "\\" not in body:
        return body
    raw = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def split_args(text: str) -> list[str]:
    """Top-level arguments of a call: commas inside quotes, braces, brackets and
    descriptor paths do not split."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            current.append(char)
            if char == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
            current.append(char)
        elif char in "{[(<":
            depth += 1
            current.append(char)
        elif char in "}])>":
            depth -= 1
            current.append(char)
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    if current:
        parts.append("".join(current).strip())
    return parts


def read_log(log: Path, first_program: str) -> Iterator[tuple[Syscall, str]]:
    """Every finished call in the log, with the calling process's working directory."""
    pending: dict[int, str] = {}
    program: dict[int, str] = {}
    cwd: dict[int, str] = {}
    first: Optional[int] = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        pid, rest = int(match.group(1)), match.group(2)
        if first is None:
            first = pid
            program[pid] = first_program
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        if rest.startswith("<... "):
            rest = pending.pop(pid, "") + rest.split(" resumed>", 1)[-1]
        call = _CALL.match(rest)
        if not call:
            continue
        name, args, result = call.group(1), split_args(call.group(2)), call.group(3)
        syscall = Syscall(pid, program.get(pid, first_program), name, args, result, rest)
        here = cwd.get(pid, os.getcwd())
        yield syscall, here
        if syscall.failed:
            continue
        if name in ("clone", "clone3", "fork", "vfork") and result.split(" ")[0].isdigit():
            # A vfork's child often runs, and execs, before its parent's call returns.
            child = int(result.split(" ")[0])
            program.setdefault(child, program.get(pid, first_program))
            cwd.setdefault(child, here)
        elif name in ("execve", "execveat"):
            program[pid] = (syscall.paths(here) or ["?"])[0]
        elif name == "chdir":
            cwd[pid] = (syscall.paths(here) or [here])[0]
        elif name == "fchdir":
            fd = _FD.match(args[0]) if args else None
            cwd[pid] = _clean(fd.group(1)) if fd else here


@dataclasses.dataclass
class Traced:
    """A command's outcome under strace."""

    argv: list[str]
    returncode: Optional[int]  # None: it was killed at the time limit
    stdout: str
    stderr: str
    seconds: float
    log: Path


def run_traced(
    argv: list[str],
    *,
    log: Path,
    env: dict[str, str],
    cwd: Path,
    time_limit: float,
    file_size_limit: int,
    memory_limit: int,
    wrapper: tuple[str, ...] = (),
) -> Traced:
    """Run `argv` under strace in its own session; kill the whole session at `time_limit`.

    The file-size and memory limits (inherited by every child) keep a runaway copy of
    a 4 GiB sparse file or a read of /dev/zero from filling this machine first.
    """

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    command = [
        "strace",
        "-f",
        "-y",
        "-qq",
        "-s",
        "4096",
        "-e",
        "abbrev=none",
        "-e",
        f"trace={SYSCALLS}",
        "-o",
        str(log),
        *wrapper,
        *argv,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=limits,
    )
    try:
        stdout, stderr = process.communicate(timeout=time_limit)
        returncode: Optional[int] = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    return Traced(
        argv,
        returncode,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
        log,
    )


def python_program() -> str:
    """What the log's execve of `sys.executable` names (a venv's python is a link)."""
    return sys.executable
