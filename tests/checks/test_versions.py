"""The one version comparison: dpkg's and rpm's own published cases, their tools
as oracles over generated versions, and the properties of a total order."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azprov.checks.versions import (
    MAX_LENGTH,
    Scheme,
    compare_text,
    parse,
    rpm_part_compare,
)
from azprov.errors import InvalidInput

# dpkg's scripts/t/Dpkg_Version.t (its __DATA__ table), less the rows whose
# versions today's dpkg refuses ("0foo-": empty revision; "-0.6.5": empty
# upstream), which are tested as refusals below.
DPKG_PAIRS = """
1.0-1 2.0-2 -1
2.2~rc-4 2.2-1 -1
2.2-1 2.2~rc-4 1
1.0000-1 1.0-1 0
1 0:1 0
0 0:0-0 0
2:2.5 1:7.5 1
1:0foo 0foo 1
0:0foo 0foo 0
0foo 0foo 0
0foo 0fo 1
0foo~1 0foo -1
0foo~foo+Bar 0foo~foo+bar -1
0foo~~ 0foo~ -1
1~ 1 -1
12345+that-really-is-some-ver-0 12345+that-really-is-some-ver-10 -1
0foo-0 0foo-01 -1
0foo.bar 0foobar 1
0foo.bar 0foo1bar 1
0foo.bar 0foo0bar 1
0foo1bar-1 0foobar-1 -1
0foo2.0 0foo2 1
0foo2.0.0 0foo2.10.0 -1
0foo2.0 0foo2.0.0 -1
0foo2.0 0foo2.10 -1
0foo2.1 0foo2.10 -1
1.09 1.9 0
1.0.8+nmu1 1.0.8 1
3.11 3.10+nmu1 1
0.9j-20080306-4 0.9i-20070324-2 1
1.2.0~b7-1 1.2.0~b6-1 1
1.011-1 1.06-2 1
0.0.9+dfsg1-1 0.0.8+dfsg1-3 1
4.6.99+svn6582-1 4.6.99+svn6496-1 1
53 52 1
0.9.9~pre122-1 0.9.9~pre111-1 1
2:2.3.2-2+lenny2 2:2.3.2-2 1
1:3.8.1-1 3.8.GA-1 1
1.0.1+gpl-1 1.0.1-2 1
1a 1000a -1
"""

# rpm's tests/rpmvercmp.at (each RPMVERCMP(a, b, result) line), caret cases included.
RPM_PAIRS = """
1.0 1.0 0
1.0 2.0 -1
2.0 1.0 1
2.0.1 2.0.1 0
2.0 2.0.1 -1
2.0.1 2.0 1
2.0.1a 2.0.1a 0
2.0.1a 2.0.1 1
2.0.1 2.0.1a -1
5.5p1 5.5p1 0
5.5p1 5.5p2 -1
5.5p2 5.5p1 1
5.5p10 5.5p10 0
5.5p1 5.5p10 -1
5.5p10 5.5p1 1
10xyz 10.1xyz -1
10.1xyz 10xyz 1
xyz10 xyz10 0
xyz10 xyz10.1 -1
xyz10.1 xyz10 1
xyz.4 xyz.4 0
xyz.4 8 -1
8 xyz.4 1
xyz.4 2 -1
2 xyz.4 1
5.5p2 5.6p1 -1
5.6p1 5.5p2 1
5.6p1 6.5p1 -1
6.5p1 5.6p1 1
6.0.rc1 6.0 1
6.0 6.0.rc1 -1
10b2 10a1 1
10a2 10b2 -1
1.0aa 1.0aa 0
1.0a 1.0aa -1
1.0aa 1.0a 1
10.0001 10.0001 0
10.0001 10.1 0
10.1 10.0001 0
10.0001 10.0039 -1
10.0039 10.0001 1
4.999.9 5.0 -1
5.0 4.999.9 1
20101121 20101121 0
20101121 20101122 -1
20101122 20101121 1
2_0 2_0 0
2.0 2_0 0
2_0 2.0 0
a a 0
a+ a+ 0
a+ a_ 0
a_ a+ 0
+a +a 0
+a _a 0
_a +a 0
+_ +_ 0
_+ +_ 0
_+ _+ 0
+ _ 0
_ + 0
1.0~rc1 1.0~rc1 0
1.0~rc1 1.0 -1
1.0 1.0~rc1 1
1.0~rc1 1.0~rc2 -1
1.0~rc2 1.0~rc1 1
1.0~rc1~git123 1.0~rc1~git123 0
1.0~rc1~git123 1.0~rc1 -1
1.0~rc1 1.0~rc1~git123 1
1.0^ 1.0^ 0
1.0^ 1.0 1
1.0 1.0^ -1
1.0^git1 1.0^git1 0
1.0^git1 1.0 1
1.0 1.0^git1 -1
1.0^git1 1.0^git2 -1
1.0^git2 1.0^git1 1
1.0^git1 1.01 -1
1.01 1.0^git1 1
1.0^20160101 1.0^20160101 0
1.0^20160101 1.0.1 -1
1.0.1 1.0^20160101 1
1.0^20160101^git1 1.0^20160101^git1 0
1.0^20160102 1.0^20160101^git1 1
1.0^20160101^git1 1.0^20160102 -1
1.0~rc1^git1 1.0~rc1^git1 0
1.0~rc1^git1 1.0~rc1 1
1.0~rc1 1.0~rc1^git1 -1
1.0^git1~pre 1.0^git1~pre 0
1.0^git1 1.0^git1~pre 1
1.0^git1~pre 1.0^git1 -1
1b.fc17 1b.fc17 0
1b.fc17 1.fc17 -1
1.fc17 1b.fc17 1
1g.fc17 1g.fc17 0
1g.fc17 1.fc17 1
1.fc17 1g.fc17 -1
"""

# Whole epoch:version-release strings, as `rpm.vercmp` (rpmverCmp) orders them:
# a missing epoch is 0, a missing release sorts before any release.
RPM_EVR_PAIRS = """
1:1.0-1 2.0-1 1
0:1.0 1.0 0
1.6.8-1 1.6.8-1 0
1.6.8-0 1.6.8-1 -1
1.6.8 1.6.8-1 -1
1.6.8-1 1.6.8 1
1-2-3 1-2 1
:1 1 0
0: 1 -1
1- 1 1
"""

DPKG_REFUSED = ("0foo-", "-0.6.5", "", " ", "1 0", ":1", "a:1", "1:", "9999999999:1", "1:-1")


def rows(table: str) -> list[tuple[str, str, int]]:
    return [(a, b, int(r)) for a, b, r in (line.split() for line in table.strip().splitlines())]


@pytest.mark.parametrize(("a", "b", "expected"), rows(DPKG_PAIRS))
def test_dpkg_published_pairs(a: str, b: str, expected: int) -> None:
    assert compare_text(Scheme.DEB, a, b) == expected


@pytest.mark.parametrize(("a", "b", "expected"), rows(RPM_PAIRS) + rows(RPM_EVR_PAIRS))
def test_rpm_published_pairs(a: str, b: str, expected: int) -> None:
    assert compare_text(Scheme.RPM, a, b) == expected


@pytest.mark.parametrize("version", DPKG_REFUSED)
def test_versions_dpkg_refuses_are_refused_by_name(version: str) -> None:
    with pytest.raises(InvalidInput, match=r"^omi Version="):
        parse(Scheme.DEB, version, "omi Version")


def test_a_version_longer_than_the_cap_is_refused_not_walked() -> None:
    with pytest.raises(InvalidInput, match="longer than"):
        parse(Scheme.DEB, "1" * (MAX_LENGTH + 1))
    with pytest.raises(InvalidInput, match="longer than"):
        parse(Scheme.RPM, "1." * MAX_LENGTH)


def test_grub_compares_without_the_caret() -> None:
    """GRUB's copy of rpmvercmp predates '^': there it only separates."""
    assert rpm_part_compare("1.0^1", "1.0.1") == -1
    assert rpm_part_compare("1.0^1", "1.0.1", caret=False) == 0


# Characters versions are made of, plus a few that only separate or are odd.
_VERSION_CHARS = "0123456789" * 3 + "abzAZ" + ".+-:~^_" + "é"
versions = st.text(alphabet=_VERSION_CHARS, min_size=1, max_size=14)
FAST = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(versions, versions)
def test_comparison_is_antisymmetric(a: str, b: str) -> None:
    for scheme in Scheme:
        try:
            forward = compare_text(scheme, a, b)
        except InvalidInput:
            continue
        assert compare_text(scheme, b, a) == -forward
        assert compare_text(scheme, a, a) == 0


@FAST
@given(versions, versions, versions)
def test_comparison_is_transitive(a: str, b: str, c: str) -> None:
    for scheme in Scheme:
        try:
            ab, bc, ac = (compare_text(scheme, x, y) for x, y in ((a, b), (b, c), (a, c)))
        except InvalidInput:
            continue
        if ab <= 0 and bc <= 0:
            assert ac <= 0, (scheme, a, b, c)
        if ab == 0 and bc == 0:
            assert ac == 0, (scheme, a, b, c)


def _dpkg(a: str, op: str, b: str) -> int:
    return subprocess.run(
        ["dpkg", "--compare-versions", "--", a, op, b], capture_output=True, check=False
    ).returncode


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
@FAST
@given(versions, versions)
def test_agrees_with_dpkg_compare_versions(a: str, b: str) -> None:
    """Both refuse the same strings, and order the others the same way."""
    ours = None
    with contextlib.suppress(InvalidInput):
        ours = compare_text(Scheme.DEB, a, b)
    lower = _dpkg(a, "lt", b)
    if ours is None:
        assert lower == 2, (a, b)
        return
    assert lower in (0, 1), (a, b)
    equal = _dpkg(a, "eq", b)
    assert ours == (-1 if lower == 0 else 0 if equal == 0 else 1), (a, b)


def _rpm_vercmp(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm's own rpm.vercmp (rpmverCmp over parsed E:V-R) for each pair, in one run."""
    script = (
        "%{lua: local r = {} "
        'for a, b in string.gmatch(os.getenv("AZPROV_PAIRS"), "([^\\t\\n]*)\\t([^\\n]*)") do '
        "r[#r + 1] = tostring(rpm.vercmp(a, b)) end "
        'print(table.concat(r, " "))}'
    )
    env = {**os.environ, "AZPROV_PAIRS": "".join(f"{a}\t{b}\n" for a, b in pairs)}
    done = subprocess.run(
        ["rpm", "--eval", script], capture_output=True, text=True, check=True, env=env
    )
    return [int(word) for word in done.stdout.split()]


# rpm's macro engine would expand '%'; its EVR parser refuses only the empty string.
rpm_versions = st.text(alphabet=_VERSION_CHARS, min_size=1, max_size=14)


@pytest.mark.skipif(shutil.which("rpm") is None, reason="rpm is not installed")
@settings(max_examples=100, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(rpm_versions, rpm_versions), min_size=1, max_size=20))
def test_agrees_with_rpm_vercmp(pairs: list[tuple[str, str]]) -> None:
    assert [compare_text(Scheme.RPM, a, b) for a, b in pairs] == _rpm_vercmp(pairs)


@FAST
@given(st.text(max_size=40))
def test_any_text_is_a_version_or_invalid_input(text: str) -> None:
    for scheme in Scheme:
        try:
            parsed = parse(scheme, text)
        except InvalidInput:
            continue
        assert compare_text(scheme, text, text) == 0
        assert parsed.scheme is scheme
