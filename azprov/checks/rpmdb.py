"""Package versions from an image's rpm database, without `rpm --root`.

`rpm --root T` uses the running machine's `%_dbpath` under T (Debian's rpm:
`/root/.rpmdb`), so it creates a database inside the image, follows a
`T/root -> /root` link to the host's, and reports an empty result as if
nothing were installed. Instead the image's database directory is found
through the tree's own link resolution, its regular files are copied to a
temporary directory, and rpm queries that copy with `--dbpath`. Anything
other than a version or "is not installed" makes the answer unknown.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from typing import Union

from azprov.checks.tools import find_tool
from azprov.checks.tree import Tree

DB_DIRS = ("var/lib/rpm", "usr/lib/sysimage/rpm")
# sqlite (rpm >= 4.16), Berkeley DB, ndb, lmdb: one of them must be there to ask rpm at all.
_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db", "data.mdb")
_MAX_BYTES = 2 << 30
_TIMEOUT = 60
_NOT_INSTALLED = re.compile(r"package (\S+) is not installed$")


def db_dir(tree: Tree) -> str:
    """The rpm database directory (one holding a database first; '' when there is none)."""
    present = [p for p in DB_DIRS if tree.is_dir(p)]
    held = [p for p in present if any(tree.is_file(f"{p}/{name}") for name in _DB_FILES)]
    return (held or present or [""])[0]


def _copy_db(tree: Tree, relative: str, into: str) -> str:
    """Copy the database's regular files into `into`; '' or why it could not be done."""
    source = tree.host_path(relative) if tree.real(relative) is not None else None
    if source is None:
        return f"{relative} is a link loop"
    total = 0
    for name in tree.listdir(relative):
        path = os.path.join(source, name)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue  # links, FIFOs, devices: not rpm's files, never opened
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return f"{relative}/{name} is unreadable ({exc.strerror})"
        with os.fdopen(fd, "rb") as handle:
            total += os.fstat(fd).st_size
            if total > _MAX_BYTES:
                return f"{relative} is larger than {_MAX_BYTES >> 30} GiB"
            with open(os.path.join(into, name), "wb") as copy:
                shutil.copyfileobj(handle, copy)
    if not any(os.path.exists(os.path.join(into, n)) for n in _DB_FILES):
        return f"{relative} holds no rpm database ({', '.join(_DB_FILES)})"
    return ""


def _parse(
    done: subprocess.CompletedProcess[str], names: tuple[str, ...]
) -> Union[dict[str, str], str]:
    versions: dict[str, str] = {}
    missing: list[str] = []
    for line in done.stdout.splitlines():
        absent = _NOT_INSTALLED.match(line.strip())
        words = line.split()
        if absent and absent.group(1) in names:
            missing.append(absent.group(1))
        elif len(words) == 2 and words[0] in names:
            versions[words[0]] = words[1]
        elif line.strip():
            return f"rpm said '{line.strip()}'"
    errors = [e for e in done.stderr.splitlines() if e.strip() and not e.startswith("warning:")]
    if errors:
        return f"rpm failed: {errors[0].strip()}"
    if done.returncode != len(missing) or set(versions) | set(missing) != set(names):
        return f"rpm exited {done.returncode} without answering for every package"
    return versions


def rpm_versions(tree: Tree, names: tuple[str, ...]) -> Union[dict[str, str], str]:
    """name -> version of the installed packages among `names`, or why that is unknown."""
    relative = db_dir(tree)
    if not relative:
        return "no rpm database in the tree"
    rpm = find_tool("rpm")
    if rpm is None:
        return "the rpm database is binary and rpm is not installed here"
    with tempfile.TemporaryDirectory(prefix="azprov-rpmdb-") as copy:
        why = _copy_db(tree, relative, copy)
        if why:
            return why
        argv = [rpm, "--dbpath", copy, "-q", "--qf", "%{NAME} %{VERSION}\\n", *names]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, check=False, timeout=_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            return f"rpm did not answer within {_TIMEOUT} s"
        except OSError as exc:
            return f"rpm could not run ({exc.strerror})"
        return _parse(done, names)
