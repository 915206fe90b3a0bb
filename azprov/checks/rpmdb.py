"""Package versions from an image's rpm database, without `rpm --root`.

`rpm --root T` uses the running machine's `%_dbpath` under T (Debian's rpm:
`/root/.rpmdb`), so it creates a database inside the image, follows a
`T/root -> /root` link to the host's, and reports an empty result as if
nothing were installed. Instead the image's database directory is found
through the tree's own link resolution, its regular files are copied (through
the tree's one door, never more than MAX_COPY_BYTES in all) to a temporary
directory that is removed on every way out, SIGTERM included, and rpm queries
that copy with `--dbpath` for each package's epoch:version-release. Anything
other than a version or "is not installed" makes the answer unknown.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
from typing import Iterator, Union

from azprov.checks.tools import find_tool
from azprov.checks.tree import Tree

DB_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm")
# sqlite (rpm >= 4.16), Berkeley DB, ndb, lmdb: one of them must be there to ask rpm at all.
_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db", "data.mdb")
# The copy lands in the host's temporary directory, often a tmpfs (RAM). Real
# databases are far smaller: Red Hat's knowledge-base example of a full RHEL
# install is 108 MB in all (Packages 96 MB), and a cloud image's few hundred
# packages take less. The cap leaves more than twice that room, and a sparse
# 1.9 GB `Packages` (nothing on the image's disk) is refused, not copied.
MAX_COPY_BYTES = 256 << 20
# A Berkeley DB database is some 20 files (Packages, its indexes, __db.00N).
MAX_COPY_FILES = 100
_CHUNK = 1 << 20
_TIMEOUT = 60
_NOT_INSTALLED = re.compile(r"package (\S+) is not installed$")
# rpm prints "(none)" for a package without an epoch.
_NO_EPOCH = "(none):"


def db_dir(tree: Tree) -> str:
    """The rpm database directory (one holding a database first; '' when there is none)."""
    present = [p for p in DB_DIRS if tree.is_dir(p)]
    held = [p for p in present if any(tree.is_file(f"{p}/{name}") for name in _DB_FILES)]
    return (held or present or [""])[0]


def _regular_files(tree: Tree, relative: str) -> Union[list[tuple[str, int]], str]:
    """(name, size) of the database's regular files, or why they are not copied."""
    files: list[tuple[str, int]] = []
    for name in tree.listdir(relative):
        found = tree.lstat(f"{relative}/{name}")
        if found is None or not stat.S_ISREG(found.st_mode):
            continue  # links, FIFOs, devices: not rpm's files, never opened
        files.append((name, found.st_size))
    if len(files) > MAX_COPY_FILES:
        return f"{relative} holds {len(files)} files, more than the {MAX_COPY_FILES} copied"
    total = sum(size for _, size in files)
    if total > MAX_COPY_BYTES:
        largest, size = max(files, key=lambda item: item[1])
        return (
            f"{relative} is larger than {MAX_COPY_BYTES >> 20} MiB ({total} bytes;"
            f" {relative}/{largest} is {size} bytes)"
        )
    return files


def _copy_db(tree: Tree, relative: str, into: str) -> str:
    """Copy the database's regular files into `into`, never more than
    MAX_COPY_BYTES in all; '' or why it could not be done."""
    files = _regular_files(tree, relative)
    if isinstance(files, str):
        return files
    budget = MAX_COPY_BYTES
    for name, _ in files:
        path = f"{relative}/{name}"
        with tree.open_regular(path) as fd:
            if fd is None:
                return f"{path} is unreadable ({tree.unreadable(path) or 'gone'})"
            with open(os.path.join(into, name), "wb") as copy:
                while True:
                    try:
                        chunk = os.read(fd, min(_CHUNK, budget + 1))
                    except OSError as exc:
                        return f"{path} is unreadable ({exc.strerror})"
                    if not chunk:
                        break
                    budget -= len(chunk)
                    if budget < 0:  # it grew after it was measured
                        return (
                            f"{relative} is larger than {MAX_COPY_BYTES >> 20} MiB ({path} grew)"
                        )
                    copy.write(chunk)
    if not any(os.path.exists(os.path.join(into, n)) for n in _DB_FILES):
        return f"{relative} holds no rpm database ({', '.join(_DB_FILES)})"
    return ""


@contextlib.contextmanager
def _removed_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the run as an exit (not a crash a check could swallow), so the
    `with` blocks around it remove the copy on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse(
    done: subprocess.CompletedProcess[str], names: tuple[str, ...]
) -> Union[dict[str, list[str]], str]:
    versions: dict[str, list[str]] = {}
    missing: list[str] = []
    for line in done.stdout.splitlines():
        absent = _NOT_INSTALLED.match(line.strip())
        words = line.split()
        if absent and absent.group(1) in names:
            missing.append(absent.group(1))
        elif len(words) == 2 and words[0] in names:
            evr = words[1]
            versions.setdefault(words[0], []).append(
                evr[len(_NO_EPOCH) :] if evr.startswith(_NO_EPOCH) else evr
            )
        elif line.strip():
            return f"rpm said '{line.strip()}'"
    errors = [e for e in done.stderr.splitlines() if e.strip() and not e.startswith("warning:")]
    if errors:
        return f"rpm failed: {errors[0].strip()}"
    if done.returncode != len(missing) or set(versions) | set(missing) != set(names):
        return f"rpm exited {done.returncode} without answering for every package"
    return versions


def rpm_versions(tree: Tree, names: tuple[str, ...]) -> Union[dict[str, list[str]], str]:
    """name -> epoch:version-release of each installed instance of the packages among
    `names` (no epoch: version-release), or why that is unknown."""
    relative = db_dir(tree)
    if not relative:
        return "no rpm database in the tree"
    rpm = find_tool("rpm")
    if rpm is None:
        return "the rpm database is binary and rpm is not installed here"
    with _removed_on_sigterm(), tempfile.TemporaryDirectory(prefix="azprov-rpmdb-") as copy:
        why = _copy_db(tree, relative, copy)
        if why:
            return why
        query = "%{NAME} %{EPOCH}:%{VERSION}-%{RELEASE}\\n"
        argv = [rpm, "--dbpath", copy, "-q", "--qf", query, *names]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, check=False, timeout=_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return f"rpm did not answer within {_TIMEOUT} s"
        except OSError as exc:
            return f"rpm could not run ({exc.strerror})"
        return _parse(done, names)
