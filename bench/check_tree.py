"""`azprov check` on a Debian 12 tree of about 40,000 files, beside `find | wc -l` for scale.

The tree is the e2e image's package set plus the kind of bulk a real build
image carries (kernel headers, a Go toolchain, perl, vim, git, man pages), built once with
mmdebstrap and cached as a tarball next to the e2e rootfs; or pass a tree:

    .venv/bin/python bench/check_tree.py [DIR]

Each row is the best of five runs, all in this one run; azprov is started as
a process (`python -m azprov --root DIR check`), imports included. The goal
is under 2 s natively.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e.image import CACHE_DIR, PACKAGES, SUITE, build_rootfs, unpack  # noqa: E402

EXTRA = (
    "linux-headers-cloud-amd64",
    "perl",
    "vim",
    "git",
    "golang-go",
    "man-db",
    "manpages",
    "manpages-dev",
    "python3-pip",
    "python3-venv",
)
GOAL_SECONDS = 2.0
RUNS = 5


def bench_tarball() -> Path:
    """The cached bench rootfs, built with mmdebstrap on first use (a few minutes)."""
    packages = sorted({*PACKAGES, *EXTRA})
    key = hashlib.sha256("\n".join([SUITE, *packages]).encode()).hexdigest()[:16]
    tarball = CACHE_DIR / f"bench-check-{SUITE}-{key}.tar"
    if tarball.is_file():
        return tarball
    if shutil.which("mmdebstrap") is None:
        sys.exit(f"no tree given, no cached {tarball} and no mmdebstrap to build it")
    print(f"building {tarball.name} with mmdebstrap (once)...", flush=True)
    build_rootfs(tarball, packages)
    return tarball


def best(action: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(tree: Path) -> bool:
    def count() -> int:
        done = subprocess.run(
            f"find {tree} -type f | wc -l", shell=True, capture_output=True, text=True, check=True
        )
        return int(done.stdout)

    def check() -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "azprov", "--root", str(tree), "check"]
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)

    find_seconds, files = best(count)
    check_seconds, result = best(check)
    assert isinstance(result, subprocess.CompletedProcess)
    if result.returncode == 2:
        sys.exit(f"azprov check could not run:\n{result.stdout}{result.stderr}")
    summary = result.stdout.strip().splitlines()[-1]
    print(f"tree: {tree} ({files} files)")
    print(f"{'find DIR -type f | wc -l':32} {find_seconds:6.3f} s")
    print(f"{'azprov --root DIR check':32} {check_seconds:6.3f} s   ({summary})")
    ok = check_seconds < GOAL_SECONDS
    print(f"goal: under {GOAL_SECONDS:g} s: {'met' if ok else 'NOT met'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tree", nargs="?", type=Path, help="a root tree (default: the cached bench tree)"
    )
    args = parser.parse_args()
    if args.tree is not None:
        return 0 if measure(args.tree) else 1
    tarball = bench_tarball()
    with tempfile.TemporaryDirectory(prefix="azprov-bench-check-") as tmp:
        tree = Path(tmp) / "root"
        unpack(tarball, tree)
        return 0 if measure(tree) else 1


if __name__ == "__main__":
    sys.exit(main())
