"""The whole of `azprov check` over a tree where a few files hold anything (issue 15, item 5).

Hypothesis takes the good tree (tests/checks/trees.py), or the same with every
network manager enabled and a real file for everything a check reads
(test_image_files_fuzz.py's areas), picks a few of the files that any check
reads, and gives them arbitrary bytes or a hostile variation of what they held.
Every check then runs through the registry, as `azprov check` runs them: none
may be reported as "could not run" (`Outcome.broken`). A check crashing on a
file's content is a bug in that check; what it was is pinned in
test_found_by_fuzz.py.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from azprov.checks import check_tree
from azprov.host.root import TargetRoot
from tests.checks.test_image_files_fuzz import AREAS, every_stack, fuzzed, hostile_file, place
from tests.checks.trees import good_tree

# Files of the good tree no check reads for their content, or whose reader has its
# own fuzzing (the initramfs: test_initramfs_fuzz.py): a change there tells nothing.
NOT_READ = ("boot/initrd.img-", "boot/vmlinuz-", "boot/efi/", "usr/bin/", "usr/sbin/")


def _regular_files(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if stat.S_ISREG(path.lstat().st_mode) and not relative.startswith(NOT_READ):
            yield relative


def _every_file(root: Path) -> Path:
    every_stack(root)
    for area in AREAS:
        area.setup(root)
        for relative, real in area.files.items():
            place(root, relative, real.encode() if isinstance(real, str) else real)
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("whole")
    return {"good": good_tree(top / "good"), "every file": _every_file(top / "every")}


@pytest.fixture(scope="module")
def read_files(trees: dict[str, Path]) -> list[str]:
    """What the checks read: the trees' regular files and every area's files."""
    names = {relative for root in trees.values() for relative in _regular_files(root)}
    names.update(relative for area in AREAS for relative in area.files)
    return sorted(names)


Saved = tuple[str, "bytes | str | None"]


def _save(root: Path, relative: str) -> Saved:
    """What is at `relative`: a link (its target), a file (its bytes), or nothing."""
    path = root / relative
    if path.is_symlink():
        return "link", str(path.readlink())
    return ("file", path.read_bytes()) if path.is_file() else ("absent", None)


def _restore(root: Path, relative: str, saved: Saved) -> None:
    path = root / relative
    if path.is_symlink():
        path.unlink()
    kind, value = saved
    if kind == "link":
        path.unlink(missing_ok=True)
        path.symlink_to(str(value))
    else:
        place(root, relative, value if isinstance(value, bytes) else None)


@fuzzed(100)
@given(data=st.data())
def test_no_check_crashes_on_what_a_file_holds(
    trees: dict[str, Path], read_files: list[str], data: st.DataObject
) -> None:
    root = trees[data.draw(st.sampled_from(sorted(trees)), "tree")]
    chosen = data.draw(
        st.lists(st.sampled_from(read_files), min_size=1, max_size=4, unique=True), "files"
    )
    before = {relative: _save(root, relative) for relative in chosen}
    try:
        for relative in chosen:
            kind, real = before[relative]
            seed = real if isinstance(real, bytes) else b""
            content = data.draw(st.one_of(st.binary(max_size=4096), hostile_file(seed)), relative)
            if kind == "link":  # the file itself, not what the link leads to
                (root / relative).unlink()
            place(root, relative, content)
        outcome = check_tree(TargetRoot(root))
        crashed = [f"{f.id}: {f.found}" for f in outcome.findings if f.id in outcome.broken]
        assert outcome.broken == [], crashed
    finally:
        for relative, saved in before.items():
            _restore(root, relative, saved)
