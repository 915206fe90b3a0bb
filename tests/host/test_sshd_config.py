"""The one sshd_config reader: what it makes of a tree is what sshd itself makes of it.

Each case of the table gives an image's /etc/ssh and what `sshd -T` (OpenSSH 9.2,
Debian 12) says of it: the global PasswordAuthentication, PidFile and HostKeys,
or that sshd refuses the configuration. Where a real sshd is installed, each case
is also put to it, so the table cannot drift from sshd, and Hypothesis draws more
configurations (keyword spellings, separators, quoting, Match and Include lines,
glob patterns against odd file names) for sshd and the reader to agree on.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.errors import FileTooLarge, HostError, UnsafePath
from azprov.host.root import TargetRoot
from azprov.host.sshd_config import (
    FILE_CAP,
    MAX_FILES,
    SshdConfig,
    read_sshd_config,
    sshd_path,
)
from azprov.host.sshd_glob import STAR, GlobComponent, _NoMatch
from tests.fuzz.hostile import PROFILE, examples
from tests.host.real_sshd import RealSshd, available, needs_sshd

INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf\n"
REFUSED = "refused"

# (case, files under etc/ssh, expected: {"password": …, "pidfile": …, "hostkey": […]} or REFUSED)
CASES: list[tuple[str, dict[str, str], object]] = [
    ("defaults", {"sshd_config": "Port 22\n"}, {}),
    (
        "first_value_wins",
        {"sshd_config": "PasswordAuthentication no\nPasswordAuthentication yes\n"},
        {"password": "no"},
    ),
    (
        "equals_forms_and_case",
        {"sshd_config": "pAsSwOrDaUtHeNtIcAtIoN   =   no\nPidFile=/run/a.pid\n"},
        {"password": "no", "pidfile": "/run/a.pid"},
    ),
    (
        "quoted_host_key_with_a_space",
        {"sshd_config": 'HostKey "/etc/ssh/my key"\nHostKey /etc/ssh/b\\ c\n'},
        {"hostkey": ["/etc/ssh/my key", "/etc/ssh/b c"]},
    ),
    (
        "single_quotes_and_escapes",
        {"sshd_config": 'PidFile \'/run/x y.pid\'\nHostKey "/etc/ssh/q\\"k"\n'},
        {"pidfile": "/run/x y.pid", "hostkey": ['/etc/ssh/q"k']},
    ),
    (
        "quoted_keyword",
        {"sshd_config": '"PasswordAuthentication" no\n'},
        {"password": "no"},
    ),
    (
        "leading_equals_sign",
        {"sshd_config": "=PasswordAuthentication no\n"},
        {"password": "no"},
    ),
    (
        "comments_and_crlf",
        {"sshd_config": "# PasswordAuthentication no\r\nPasswordAuthentication no # yes\r\n"},
        {"password": "no"},
    ),
    (
        "a_nul_joins_the_next_line",
        {"sshd_config": "PidFile /run/a\0ignored\n.pid\nPasswordAuthentication no\n"},
        {"pidfile": "/run/a.pid", "password": "no"},
    ),
    (
        "a_form_feed_at_the_end",
        {"sshd_config": "PasswordAuthentication no\f\n"},
        {"password": "no"},
    ),
    (
        "include_in_place_sorted",
        {
            "sshd_config": f"HostKey /k/0\n{INCLUDE}HostKey /k/9\nPasswordAuthentication yes\n",
            "sshd_config.d/b.conf": "HostKey /k/b\n",
            "sshd_config.d/a.conf": "HostKey /k/a\nPasswordAuthentication no\n",
            "sshd_config.d/B.conf": "HostKey /k/B\n",
            "sshd_config.d/.hidden.conf": "HostKey /k/hidden\n",
            "sshd_config.d/c.conf.disabled": "HostKey /k/disabled\n",
        },
        {"password": "no", "hostkey": ["/k/0", "/k/B", "/k/a", "/k/b", "/k/9"]},
    ),
    (
        "relative_include_and_bracket_pattern",
        {
            "sshd_config": "Include conf.d/[0-4]*\nPidFile /run/main.pid\n",
            "conf.d/10-x": "PidFile /run/10.pid\n",
            "conf.d/50-y": "PidFile /run/50.pid\n",
        },
        {"pidfile": "/run/10.pid"},
    ),
    (
        "include_of_a_directory_reads_as_empty",
        {
            "sshd_config": "Include sub*\nPidFile /run/main.pid\n",
            "sub/x.conf": "PidFile /run/sub.pid\n",
        },
        {"pidfile": "/run/main.pid"},
    ),
    (
        "match_ends_globals",
        {"sshd_config": "Match User x\n  PasswordAuthentication no\n"},
        {},
    ),
    (
        "match_all_makes_them_global_again",
        {
            "sshd_config": "Match User x\n  X11Forwarding no\nMatch all\nPasswordAuthentication no\n"
        },
        {"password": "no"},
    ),
    (
        "match_all_overrides_an_earlier_global_value",
        {
            "sshd_config": "PasswordAuthentication no\nPidFile /run/a.pid\n"
            "Match all\nPasswordAuthentication yes\nPidFile /run/b.pid\n"
        },
        {"password": "yes", "pidfile": "/run/a.pid"},
    ),
    (
        "the_first_match_all_value_wins_among_them",
        {
            "sshd_config": "PasswordAuthentication yes\nMatch User x\n  PasswordAuthentication yes\n"
            "Match all\nPasswordAuthentication no\nMatch all\nPasswordAuthentication yes\n"
        },
        {"password": "no"},
    ),
    (
        "a_match_in_a_drop_in_ends_with_it",
        {
            "sshd_config": f"{INCLUDE}PasswordAuthentication no\n",
            "sshd_config.d/10.conf": "Match User x\n  PasswordAuthentication yes\n",
        },
        {"password": "no"},
    ),
    (
        "an_include_under_a_match_is_conditional",
        {
            "sshd_config": f"Match User x\n  {INCLUDE}Match all\nPasswordAuthentication no\n",
            "sshd_config.d/10.conf": "Match all\nPasswordAuthentication yes\n",
        },
        {"password": "no"},
    ),
    # Include patterns, as OpenSSH's built-in glob(3) (OpenBSD's) matches them.
    (
        "glob_dot_entries",
        {
            "sshd_config": "Include /etc/ssh/sub/.*/x.conf\n",
            "sub/x.conf": "PidFile /run/sub.pid\n",
            "x.conf": "HostKey /k/top\n",
        },
        {"pidfile": "/run/sub.pid", "hostkey": ["/k/top"]},
    ),
    (
        "glob_hidden_only_by_a_dot",
        {
            "sshd_config": "Include /etc/ssh/sub/* /etc/ssh/hid/\\.*\n",
            "sub/.h": "PidFile /run/h.pid\n",
            "hid/.h": "HostKey /k/hidden\n",
        },
        {"hostkey": ["/k/hidden"]},
    ),
    (
        "glob_escape_class_negation",
        {
            "sshd_config": "Include /etc/ssh/s/\\* /etc/ssh/s/[[:digit:]]* /etc/ssh/s/[!a-c]\n",
            "s/*": "HostKey /k/star\n",
            "s/1": "HostKey /k/1\n",
            "s/a": "HostKey /k/a\n",
            "s/d": "HostKey /k/d\n",
        },
        {"hostkey": ["/k/star", "/k/1", "/k/star", "/k/1", "/k/d"]},
    ),
    (
        "glob_caret_is_no_negation",
        {
            "sshd_config": "Include /etc/ssh/s/[^a]\n",
            "s/a": "HostKey /k/a\n",
            "s/b": "HostKey /k/b\n",
        },
        {"hostkey": ["/k/a"]},
    ),
    (
        "glob_brackets_at_the_edges",
        {
            "sshd_config": "Include /etc/ssh/s/[]x] /etc/ssh/s/[\\]] /etc/ssh/s/[!a /etc/ssh/s/[z-a]\n",
            "s/]": "HostKey /k/close\n",
            "s/[!a": "HostKey /k/literal\n",
            "s/b": "HostKey /k/b\n",
        },
        {"hostkey": ["/k/close", "/k/close", "/k/literal"]},
    ),
    (
        "glob_dots_of_a_missing_directory",
        {"sshd_config": "Include /etc/ssh/none/.* /etc/ssh/none/.*/x\n"},
        {},
    ),
    (
        "glob_unknown_class_matches_nothing",
        {"sshd_config": "Include /etc/ssh/s/[[:word:]]*\n", "s/a": "HostKey /k/a\n"},
        {},
    ),
    (
        "glob_sorted_by_bytes",
        {
            "sshd_config": "Include /etc/ssh/s/*\n",
            "s/B": "HostKey /k/B\n",
            "s/a": "HostKey /k/a\n",
            "s/\u00e9": "HostKey /k/e-acute\n",
            "s/z": "HostKey /k/z\n",
        },
        {"hostkey": ["/k/B", "/k/a", "/k/z", "/k/e-acute"]},
    ),
    ("unclosed_quote", {"sshd_config": 'PidFile "/run/x\n'}, REFUSED),
    ("keyword_without_value", {"sshd_config": "PasswordAuthentication\n"}, REFUSED),
    ("match_all_and_more", {"sshd_config": "Match all User x\n"}, REFUSED),
    ("match_without_criteria", {"sshd_config": "Match\n"}, REFUSED),
    (
        "include_loop",
        {"sshd_config": INCLUDE, "sshd_config.d/loop.conf": INCLUDE},
        REFUSED,
    ),
]


def expected_of(case: object) -> dict[str, object]:
    assert isinstance(case, dict)
    return {
        "password": case.get("password", "yes"),  # sshd's default
        "pidfile": case.get("pidfile", "/run/sshd.pid"),
        "hostkey": case.get("hostkey", []),
    }


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "etc/ssh" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    return root


def ours(root: Path) -> Optional[dict[str, object]]:
    """The reader's answer in sshd -T's terms; None when it finds sshd would refuse."""
    try:
        config = read_sshd_config(TargetRoot(root))
    except HostError:
        return None
    assert isinstance(config, SshdConfig)
    if config.problems:
        return None
    # sshd -T without -C applies the `Match all` blocks over the global values (and no
    # other: `Match User *` needs a user); the cases here draw no other such block.
    password = config.for_every_connection("PasswordAuthentication")
    pid_file = config.first("PidFile")
    return {
        "password": password.value.lower() if password else "yes",
        "pidfile": sshd_path(pid_file.args[0]) if pid_file else "/run/sshd.pid",
        "hostkey": [sshd_path(s.args[0]) for s in config.every("HostKey")],
    }


@pytest.fixture(scope="module")
def real_sshd(tmp_path_factory: pytest.TempPathFactory) -> Optional[RealSshd]:
    return RealSshd(tmp_path_factory.mktemp("sshd")) if available() else None


@pytest.mark.parametrize(
    ("files", "expected"), [pytest.param(f, e, id=name) for name, f, e in CASES]
)
def test_the_reader_reads_as_sshd_does(
    tmp_path: Path, files: dict[str, str], expected: object, real_sshd: Optional[RealSshd]
) -> None:
    root = tree(tmp_path, files)
    want = None if expected == REFUSED else expected_of(expected)
    assert ours(root) == want
    if real_sshd is not None:
        said = real_sshd.settings(root)
        if want is None:
            assert said is None
        else:
            assert said is not None
            assert {
                "password": said["passwordauthentication"][0],
                "pidfile": said["pidfile"][0],
                "hostkey": said["hostkey"],
            } == want


# -- bounds: nothing sshd reads may make the reader hang, balloon or leave the tree -----


def test_an_include_web_that_multiplies_is_refused_by_count(tmp_path: Path) -> None:
    """20 files that each include 20 others: 400 reads, two levels deep."""
    files = {f"a/{n}.conf": "Include b/*.conf\n" for n in range(20)}
    files.update({f"b/{n}.conf": "Port 22\n" for n in range(20)})
    root = tree(tmp_path, {"sshd_config": "Include a/*.conf\n", **files})
    with pytest.raises(HostError, match=f"more than {MAX_FILES} files"):
        read_sshd_config(TargetRoot(root))


def test_an_include_web_that_feeds_itself_stops_at_sshd_depth(tmp_path: Path) -> None:
    """Each of 8 files includes all 8: sshd would read 8^16 files, and stops at 16 deep."""
    files = {f"sshd_config.d/{n}.conf": INCLUDE for n in range(8)}
    root = tree(tmp_path, {"sshd_config": INCLUDE, **files})
    with pytest.raises(HostError, match="more than 16 files deep"):
        read_sshd_config(TargetRoot(root))


def test_a_file_over_the_cap_is_refused_whole(tmp_path: Path) -> None:
    root = tree(tmp_path, {"sshd_config": INCLUDE})
    (root / "etc/ssh/sshd_config.d/big.conf").write_bytes(b"#" * (FILE_CAP + 1))
    with pytest.raises(FileTooLarge, match=r"big\.conf"):
        read_sshd_config(TargetRoot(root))


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    root = tree(tmp_path, {"sshd_config": INCLUDE})
    os.mkfifo(root / "etc/ssh/sshd_config.d/pipe.conf")
    with pytest.raises(UnsafePath, match="FIFO"):
        read_sshd_config(TargetRoot(root))


def test_a_dangling_include_is_refused_as_sshd_refuses_it(tmp_path: Path) -> None:
    root = tree(tmp_path, {"sshd_config": INCLUDE})
    (root / "etc/ssh/sshd_config.d/gone.conf").symlink_to("/nowhere")
    with pytest.raises(HostError, match="cannot be opened"):
        read_sshd_config(TargetRoot(root))


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_link_out_of_the_tree_is_read_inside_it(tmp_path: Path, how: str) -> None:
    """A link to the host's file is the image's file at that path: never the host's."""
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret.conf").write_text("PidFile /run/from-the-host.pid\n")
    root = tree(tmp_path / "image", {"sshd_config": INCLUDE})
    drop_ins = root / "etc/ssh/sshd_config.d"
    target = str(outside / "secret.conf") if how == "absolute" else "../" * 6 + "host/secret.conf"
    (drop_ins / "10.conf").symlink_to(target)
    with pytest.raises(HostError, match="cannot be opened") as refused:
        read_sshd_config(TargetRoot(root))  # nothing at that path inside: sshd would stop too
    assert "from-the-host" not in str(refused.value)
    inside = root / (str(outside).lstrip("/") if how == "absolute" else "host")
    inside.mkdir(parents=True)
    (inside / "secret.conf").write_text("PidFile /run/from-the-image.pid\n")
    config = read_sshd_config(TargetRoot(root))
    assert config is not None
    found = config.first("PidFile")
    assert found is not None and found.value == "/run/from-the-image.pid"


def test_an_absolute_include_reads_the_image_not_the_host(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret.conf").write_text("PidFile /run/from-the-host.pid\n")
    root = tree(tmp_path / "image", {"sshd_config": f"Include {outside}/*.conf\n"})
    config = read_sshd_config(TargetRoot(root))
    assert config is not None and config.first("PidFile") is None
    inside = root / str(outside).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "secret.conf").write_text("PidFile /run/from-the-image.pid\n")
    config = read_sshd_config(TargetRoot(root))
    assert config is not None
    found = config.first("PidFile")
    assert found is not None and found.value == "/run/from-the-image.pid"


def test_an_overlay_file_is_read_as_if_written(tmp_path: Path) -> None:
    root = tree(tmp_path, {"sshd_config": f"{INCLUDE}PasswordAuthentication yes\n"})
    dropin = "/etc/ssh/sshd_config.d/00-azprov.conf"
    config = read_sshd_config(TargetRoot(root), overlay={dropin: b"PasswordAuthentication no\n"})
    assert config is not None
    winner = config.first("passwordauthentication")
    assert winner is not None and (winner.path, winner.value) == (dropin, "no")
    assert config.read_globally(dropin) is not None
    assert list((root / "etc/ssh/sshd_config.d").iterdir()) == []


# -- against the real sshd: configurations drawn from sshd's own grammar ----------------

_KEYWORDS = ["PasswordAuthentication", "PidFile", "HostKey", "Port"]
_VALUES = {
    "passwordauthentication": ["yes", "no", "YES", "No"],
    "pidfile": ["/run/a.pid", "/run/b c.pid", "/run/d'e.pid", '/run/f"g.pid', "/run/h\\ i.pid"],
    "hostkey": ["/k/1", "/k/2 3", "/k/#4", "/k/5\\\\6", "/k/\\7"],
    "port": ["22", "2222"],
}


def _quoted(value: str) -> st.SearchStrategy[str]:
    """A value as a person might write it: plain, quoted, or escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return st.sampled_from(
        [value, f'"{escaped}"', f"'{escaped}'", escaped.replace(" ", "\\ "), f'"{value}']
    )


@st.composite
def _setting_line(draw: st.DrawFn) -> str:
    keyword = draw(st.sampled_from(_KEYWORDS))
    spelled = "".join(draw(st.sampled_from([c.lower(), c.upper()])) for c in keyword)
    if draw(st.booleans()):
        spelled = f'"{spelled}"'
    separator = draw(st.sampled_from([" ", "\t", "=", " = ", "  =\t", "==", " ", ""]))
    value = draw(_quoted(draw(st.sampled_from(_VALUES[keyword.lower()]))))
    lead = draw(st.sampled_from(["", "  ", "\t", "\r", "="]))
    tail = draw(st.sampled_from(["", " ", "\r", "\f", " # note", "\t#", " extra", "\0junk"]))
    return f"{lead}{spelled}{separator}{value}{tail}"


def _file_text() -> st.SearchStrategy[str]:
    line = st.one_of(
        _setting_line(),
        st.sampled_from(
            [
                "",
                "# comment",
                "Match User backup",
                "Match all",
                "match ALL # again",
                "Match Address 10.0.0.0/8",
                "Match all User x",
                "Match",
                "Include sshd_config.d/*.conf",
                "Include /etc/ssh/sshd_config.d/1*.conf",
                "Include /etc/ssh/extra/*",
                'Include "sshd_config.d/[a-c]*.conf"',
                "Include",
            ]
        ),
    )
    return st.lists(line, max_size=8).map(lambda lines: "\n".join(lines) + "\n")


@needs_sshd
@settings(
    max_examples=examples(100),
    deadline=None,
    derandomize=PROFILE == "ci",  # the same examples on every run, but in the long one
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    main=_file_text(),
    drop_ins=st.dictionaries(
        st.sampled_from(["10.conf", "a.conf", "b.conf", "1x.conf", ".h.conf"]),
        _file_text(),
        max_size=3,
    ),
    extra=st.one_of(st.none(), _file_text()),
)
def test_the_reader_agrees_with_sshd_on_drawn_configurations(
    tmp_path_factory: pytest.TempPathFactory,
    real_sshd: Optional[RealSshd],
    main: str,
    drop_ins: dict[str, str],
    extra: Optional[str],
) -> None:
    assert real_sshd is not None
    files = {"sshd_config": main, **{f"sshd_config.d/{k}": v for k, v in drop_ins.items()}}
    if extra is not None:
        files["extra/x.conf"] = extra
    root = tree(tmp_path_factory.mktemp("drawn"), files)
    said = real_sshd.settings(root)
    mine = ours(root)
    if mine is None:  # what the reader refuses, sshd refuses (not always the other way:
        assert said is None  # the reader does not check values sshd would reject)
    elif said is not None:
        assert mine == {
            "password": said["passwordauthentication"][0],
            "pidfile": said["pidfile"][0],
            "hostkey": said["hostkey"],
        }


_GLOB_PIECES = ["a", "b", "1", ".", "-", "!", "^", "[", "]", "*", "?", "\\", ":", "é", "[:digit:]"]
_NAME_CHARS = ["a", "b", "1", ".", "-", "!", "^", "[", "]", "*", "?", "\\", ":", "é"]


@needs_sshd
@settings(
    max_examples=examples(100),
    deadline=None,
    derandomize=PROFILE == "ci",
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pattern=st.lists(st.sampled_from(_GLOB_PIECES), min_size=1, max_size=6).map("".join),
    names=st.sets(
        st.lists(st.sampled_from(_NAME_CHARS), min_size=1, max_size=4).map("".join),
        max_size=6,
    ),
)
def test_include_patterns_match_the_files_sshd_matches(
    tmp_path_factory: pytest.TempPathFactory,
    real_sshd: Optional[RealSshd],
    pattern: str,
    names: set[str],
) -> None:
    assert real_sshd is not None
    names -= {".", ".."}
    files = {f"s/{name}": f"HostKey /k/{index}\n" for index, name in enumerate(sorted(names))}
    quoted = '"' + pattern.replace("\\", "\\\\").replace('"', '\\"') + '"'
    root = tree(tmp_path_factory.mktemp("glob"), {"sshd_config": f"Include s/{quoted}\n", **files})
    said = real_sshd.settings(root)
    assert said is not None
    assert ours(root) == {
        "password": "yes",
        "pidfile": "/run/sshd.pid",
        "hostkey": said["hostkey"],
    }


def _old_regex_matches(component: GlobComponent, name: str) -> bool:
    """How the component matched before: one regex, `.*` for each star."""
    regex = "".join(".*" if atom is STAR else atom for atom in component.atoms)
    encoded = os.fsencode(name).decode("latin-1")
    if encoded.startswith(".") and not component.literal_dot:
        return False
    return re.fullmatch(regex, encoded, re.DOTALL) is not None


def test_a_pattern_of_many_stars_matches_a_long_name_in_linear_time(tmp_path: Path) -> None:
    # `*a` six times then `b` against 100 `a`s took 23 s with one backtracking regex.
    component = GlobComponent("*a" * 10 + "b")
    started = time.monotonic()
    assert not component.matches("a" * 255)
    assert component.matches("a" * 254 + "b")
    assert not GlobComponent("*" + "a*" * 100 + "b").matches("a" * 255)
    assert time.monotonic() - started < 0.5
    root = tree(tmp_path, {"sshd_config": "Include sshd_config.d/*a*a*a*a*a*a*a*a*a*a*b\n"})
    (tmp_path / "etc/ssh/sshd_config.d" / ("a" * 200)).write_text("PasswordAuthentication no\n")
    started = time.monotonic()
    assert ours(root) == {"password": "yes", "pidfile": "/run/sshd.pid", "hostkey": []}
    assert time.monotonic() - started < 2


@settings(max_examples=examples(200), deadline=1000, derandomize=PROFILE == "ci")
@given(
    pattern=st.lists(st.sampled_from(_GLOB_PIECES), min_size=1, max_size=8).map("".join),
    name=st.lists(st.sampled_from(_NAME_CHARS), min_size=0, max_size=8).map("".join),
)
def test_the_star_matcher_agrees_with_the_regex_it_replaced(pattern: str, name: str) -> None:
    # Short patterns and names: the old regex is fast there, and right.
    try:
        component = GlobComponent(pattern)
    except _NoMatch:
        return
    assert component.matches(name) == _old_regex_matches(component, name)
