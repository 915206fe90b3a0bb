"""Fuzzing the sshd_config reader: arbitrary text, and hostile webs of Includes in a tree.

The property: `read_sshd_config` returns a configuration (or None without an
sshd_config) or raises azprov's own error, in bounded time, and never opens
anything outside the tree. That last part is checked twice: an audit hook sees
every path opened by name (only the tree's own top may be absolute: the door
opens the rest by name from a directory descriptor), and a bait outside the
tree, which every kind of link in the web points at, never shows up in what is
read.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from azprov.host.root import TargetRoot
from azprov.host.sshd_config import FILE_CAP, SshdConfig, read_sshd_config
from tests.fuzz.hostile import examples, hostile_text, typed_outcome

DEADLINE = timedelta(seconds=3)
BAIT = "BAIT-OUTSIDE-THE-TREE"

_opened: Optional[list[str]] = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _opened is not None and event in ("open", "os.listdir", "os.scandir") and args:
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):
            _opened.append(os.fsdecode(path))


sys.addaudithook(_audit)


def read_recording(root: Path) -> tuple[Optional[SshdConfig], list[str]]:
    """The reader's outcome (None for its own error) and every path it opened by name."""
    global _opened
    _opened = []
    try:
        outcome = typed_outcome(read_sshd_config, TargetRoot(root))
        return outcome, _opened
    finally:
        _opened = None


def assert_confined(root: Path, opened: list[str], config: Optional[SshdConfig]) -> None:
    top = os.path.realpath(root)
    for path in opened:
        if os.path.isabs(path):
            assert path == top or path.startswith(top + os.sep), f"opened {path} outside {top}"
    if config is not None:
        for setting in config.settings:
            assert BAIT not in " ".join(setting.args), setting
        assert all(BAIT not in f.path for f in config.files)


@settings(max_examples=examples(150), deadline=DEADLINE)
@given(
    main=st.one_of(st.binary(max_size=2048), hostile_text(256).map(str.encode)),
    drop_in=st.one_of(st.none(), st.binary(max_size=512)),
)
def test_any_bytes_give_a_configuration_or_azprov_error(
    main: bytes, drop_in: Optional[bytes]
) -> None:
    with tempfile.TemporaryDirectory() as top:
        root = Path(top) / "image"
        (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
        (root / "etc/ssh/sshd_config").write_bytes(b"Include sshd_config.d/*\n" + main)
        if drop_in is not None:
            (root / "etc/ssh/sshd_config.d/50.conf").write_bytes(drop_in)
        config, opened = read_recording(root)
        assert_confined(root, opened, config)


# -- hostile webs ------------------------------------------------------------------------

_DIRS = ["etc/ssh", "etc/ssh/sshd_config.d", "etc/ssh/x", "srv"]
_NAMES = ["a.conf", "b.conf", "c", ".d.conf", "sshd_config"]


def _include_line(bait_dir: str) -> st.SearchStrategy[str]:
    patterns = st.sampled_from(
        [
            "sshd_config.d/*.conf",
            "sshd_config.d/*",
            "*",
            "x/*",
            "x/[ab]*",
            "../ssh/x/?.conf",
            "/srv/*",
            "/etc/ssh/sshd_config",
            "/../../../../srv/*",
            f"{bait_dir}/*",
            "~/x",
            ".*",
            "*/*/*",
            "[",
            "\\*",
        ]
    )
    return st.lists(patterns, min_size=1, max_size=3).map(lambda ps: "Include " + " ".join(ps))


def _content(bait_dir: str) -> st.SearchStrategy[bytes]:
    line = st.one_of(
        _include_line(bait_dir),
        st.sampled_from(
            [
                "PidFile /run/x.pid",
                'HostKey "/etc/ssh/my key"',
                "PasswordAuthentication=no",
                "Match User x",
                "Match all",
                "Match",
                "# comment",
                'PidFile "open',
            ]
        ),
        st.text(max_size=40),
    )
    return st.lists(line, max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "replace"))


def _entry(bait_dir: str) -> st.SearchStrategy[tuple[str, Any]]:
    """What one name in the tree is: a file, a link (in, out, up, looping), a FIFO,
    a directory, or a file over the cap."""
    return st.one_of(
        st.tuples(st.just("file"), _content(bait_dir)),
        st.tuples(
            st.just("link"),
            st.sampled_from(
                [
                    f"{bait_dir}/bait.conf",
                    bait_dir,
                    "../../../../../../bait/bait.conf",
                    "/etc/ssh/sshd_config",
                    "/etc/ssh/x",
                    "a.conf",
                    "self",
                    "/nowhere",
                ]
            ),
        ),
        st.tuples(st.just("fifo"), st.none()),
        st.tuples(st.just("dir"), st.none()),
        st.tuples(st.just("big"), st.none()),
    )


@st.composite
def hostile_tree(draw: st.DrawFn, bait_dir: str) -> dict[str, tuple[str, Any]]:
    entries = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(_DIRS), st.sampled_from(_NAMES)).map("/".join),
            _entry(bait_dir),
            max_size=10,
        )
    )
    main = "etc/ssh/sshd_config"
    entries.setdefault(main, ("file", draw(_content(bait_dir))))
    return entries


def build(root: Path, entries: dict[str, tuple[str, Any]]) -> None:
    for directory in _DIRS:
        (root / directory).mkdir(parents=True, exist_ok=True)
    for relative, (kind, value) in sorted(entries.items()):
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            continue  # a directory of the layout stays one
        if kind == "file":
            path.write_bytes(value)
        elif kind == "link":
            path.symlink_to(relative.rsplit("/", 1)[1] if value == "self" else value)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        else:
            with open(path, "wb") as big:
                big.truncate(FILE_CAP + 1)  # sparse: large without the disk


@settings(max_examples=examples(100), deadline=DEADLINE)
@given(data=st.data())
def test_a_hostile_include_web_never_leaves_the_tree(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as top:
        bait = Path(top) / "bait"
        bait.mkdir()
        (bait / "bait.conf").write_text(
            f"PidFile /{BAIT}\nHostKey /{BAIT}\nInclude /etc/ssh/*\n# {BAIT}\n"
        )
        root = Path(top) / "image"
        build(root, data.draw(hostile_tree(str(bait))))
        config, opened = read_recording(root)
        assert_confined(root, opened, config)
