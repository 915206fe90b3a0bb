"""Package versions compared the way the image's package manager compares them.

One comparison for every check that asks "is this older than that": Debian's
rules (dpkg's `epoch:upstream-revision`, `verrevcmp`) for what the dpkg
status says, rpm's (`epoch:version-release`, `rpmvercmp` with `~` and `^`)
for the rpm database and for GRUB's boot entries. A version string comes from
the image, so it is bounded and a malformed one is refused with `InvalidInput`
(as dpkg refuses it), never guessed at.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Callable, Optional

from azprov.errors import InvalidInput

# Real versions are short (the longest in Debian's archive is under 100
# characters); the cap keeps a crafted status line from costing more than a
# glance and keeps an epoch within what int() parses.
MAX_LENGTH = 512
# dpkg keeps the epoch in an int and refuses a larger one.
_DEB_EPOCH_MAX = 2**31 - 1
# What C's strtol, which dpkg reads the epoch with, accepts before the colon.
_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")
_ASCII_DIGIT = frozenset(b"0123456789")
_ASCII_ALPHA = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# rpmvercmp's segments: runs of ASCII digits, runs of ASCII letters, and the
# tilde and caret marks; everything else only separates segments.
_RPM_SEGMENTS = re.compile(r"[0-9]+|[A-Za-z]+|~|\^")
_RPM_SEGMENTS_NO_CARET = re.compile(r"[0-9]+|[A-Za-z]+|~")


class Scheme(enum.Enum):
    """Whose rules a version string follows."""

    DEB = "dpkg"
    RPM = "rpm"


@dataclasses.dataclass(frozen=True)
class Version:
    """A parsed version: `release` is Debian's revision or rpm's release, None
    when the string has none (rpm orders a missing release before any)."""

    scheme: Scheme
    epoch: int
    upstream: str
    release: Optional[str]


def parse(scheme: Scheme, text: str, field: str = "version") -> Version:
    """Split `text` into epoch, upstream version and revision/release as the
    scheme's package manager does; `field` names where it came from in errors."""
    if len(text) > MAX_LENGTH:
        raise InvalidInput(field, text, f"is longer than {MAX_LENGTH} characters")
    return _parse_deb(text, field) if scheme is Scheme.DEB else _parse_rpm(text, field)


def _parse_deb(text: str, field: str) -> Version:
    """dpkg's parseversion: its errors refuse the version, its warnings
    (a first character that is not a digit, odd characters) do not."""
    version = text.strip(" \t")
    if not version:
        raise InvalidInput(field, text, "is empty")
    if " " in version or "\t" in version:
        raise InvalidInput(field, text, "has embedded spaces")
    epoch = 0
    head, colon, rest = version.partition(":")
    if colon:
        number = _STRTOL.match(head)
        assert number is not None  # every group is optional
        if not number.group(2):
            raise InvalidInput(field, text, "has an empty epoch")
        if number.end() != len(head):
            raise InvalidInput(field, text, "has an epoch that is not a number")
        epoch = int(number.group(2))
        if number.group(1) == "-" and epoch:
            raise InvalidInput(field, text, "has a negative epoch")
        if epoch > _DEB_EPOCH_MAX:
            raise InvalidInput(field, text, "has an epoch that is too big")
        if not rest:
            raise InvalidInput(field, text, "has nothing after the colon")
        version = rest
    upstream, hyphen, revision = version.rpartition("-")
    if not hyphen:
        upstream, revision = version, ""
    elif not revision:
        raise InvalidInput(field, text, "has an empty revision")
    if not upstream:
        raise InvalidInput(field, text, "has an empty upstream version")
    return Version(Scheme.DEB, epoch, upstream, revision)


def _parse_rpm(text: str, field: str) -> Version:
    """rpm's parseEVR: an epoch only when digits come before the first ':'
    (an empty one is 0), the release after the last '-'."""
    if not text:
        raise InvalidInput(field, text, "is empty")
    digits = len(text) - len(text.lstrip("0123456789"))
    epoch, body = 0, text
    if text[digits : digits + 1] == ":":
        epoch, body = int(text[:digits] or "0"), text[digits + 1 :]
    upstream, hyphen, release = body.rpartition("-")
    if not hyphen:
        return Version(Scheme.RPM, epoch, body, None)
    return Version(Scheme.RPM, epoch, upstream, release)


def compare(a: Version, b: Version) -> int:
    """-1, 0 or 1 as `a` is older than, the same as or newer than `b`."""
    if a.scheme is not b.scheme:
        raise ValueError(f"cannot compare a {a.scheme.value} and a {b.scheme.value} version")
    if a.epoch != b.epoch:
        return -1 if a.epoch < b.epoch else 1
    parts = compare_parts(a.scheme)
    found = parts(a.upstream, b.upstream)
    if found or a.release == b.release:
        return found
    if a.release is None or b.release is None:  # rpm only: no release sorts first
        return -1 if a.release is None else 1
    return parts(a.release, b.release)


def compare_text(scheme: Scheme, a: str, b: str) -> int:
    """`compare` of two version strings (parsed with `parse`, so it may raise)."""
    return compare(parse(scheme, a), parse(scheme, b))


def compare_parts(scheme: Scheme) -> Callable[[str, str], int]:
    """The scheme's comparison of one part (an upstream version, a revision)."""
    return deb_part_compare if scheme is Scheme.DEB else rpm_part_compare


def _deb_order(byte: int) -> int:
    """dpkg's order(): digits 0, letters their code, '~' below everything,
    the end of the string 0, any other character above every letter. A byte
    above 127 keeps its value as dpkg's signed `char` gives it on amd64."""
    if byte in _ASCII_DIGIT:
        return 0
    if byte in _ASCII_ALPHA:
        return byte
    if byte == 0x7E:  # '~'
        return -1
    return byte if byte > 127 else byte + 256


def deb_part_compare(a: str, b: str) -> int:
    """dpkg's verrevcmp of two upstream versions or two revisions: -1, 0 or 1."""
    left = a.encode("utf-8", "surrogateescape")
    right = b.encode("utf-8", "surrogateescape")
    i = j = 0
    while i < len(left) or j < len(right):
        # The non-digit run, character by character by dpkg's order.
        while (i < len(left) and left[i] not in _ASCII_DIGIT) or (
            j < len(right) and right[j] not in _ASCII_DIGIT
        ):
            ours = _deb_order(left[i]) if i < len(left) else 0
            theirs = _deb_order(right[j]) if j < len(right) else 0
            if ours != theirs:
                return -1 if ours < theirs else 1
            i += 1
            j += 1
        # Then the digit run, as a number.
        start_i, start_j = i, j
        while i < len(left) and left[i] in _ASCII_DIGIT:
            i += 1
        while j < len(right) and right[j] in _ASCII_DIGIT:
            j += 1
        ours_n = left[start_i:i].lstrip(b"0")
        theirs_n = right[start_j:j].lstrip(b"0")
        if ours_n != theirs_n:
            if len(ours_n) != len(theirs_n):
                return -1 if len(ours_n) < len(theirs_n) else 1
            return -1 if ours_n < theirs_n else 1
    return 0


def rpm_part_compare(a: str, b: str, *, caret: bool = True) -> int:
    """rpm's rpmvercmp of two versions or two releases: -1, 0 or 1.

    Segments of digits compare as numbers and beat segments of letters; '~'
    sorts before anything, even the end; '^' sorts after the end but before
    any other segment. GRUB's blscfg copied rpmvercmp before '^' existed:
    `caret=False` compares as it does, '^' then being a mere separator.
    """
    if a == b:
        return 0
    pattern = _RPM_SEGMENTS if caret else _RPM_SEGMENTS_NO_CARET
    left = pattern.findall(a)
    right = pattern.findall(b)
    for index in range(max(len(left), len(right)) + 1):
        ours = left[index] if index < len(left) else ""
        theirs = right[index] if index < len(right) else ""
        if ours == "~" or theirs == "~":
            if ours != theirs:
                return -1 if ours == "~" else 1
            continue
        if ours == "^" or theirs == "^":
            if not ours or not theirs:
                return -1 if not ours else 1
            if ours != theirs:
                return -1 if ours == "^" else 1
            continue
        if not ours or not theirs:
            if ours == theirs:
                return 0
            return -1 if not ours else 1
        if ours[0].isdigit() != theirs[0].isdigit():
            return 1 if ours[0].isdigit() else -1
        if ours[0].isdigit():
            ours, theirs = ours.lstrip("0"), theirs.lstrip("0")
            if len(ours) != len(theirs):
                return -1 if len(ours) < len(theirs) else 1
        if ours != theirs:
            return -1 if ours < theirs else 1
    return 0
