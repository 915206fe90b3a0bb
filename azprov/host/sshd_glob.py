"""Include patterns, expanded as sshd's glob(3) call does (no flags, C locale):
matches sorted by bytes, backslash escapes, no `~` expansion, `*` and `?` and
`[…]` per path component, a leading `.` matched only by a `.`, and `.` and
`..` among a directory's entries. Directories are listed through the target
root's door; a directory that cannot be listed matches nothing, as with glob(3).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Mapping, Optional, Tuple

from azprov.confined import Confined
from azprov.errors import FileTooLarge, HostError
from azprov.host.sshd_syntax import shown

# glob(3) takes no pattern of this many bytes or more.
_PATH_MAX = 4096


class Glob:
    """Expands patterns in a tree; `overlay` names files taken to exist there."""

    def __init__(self, root: Confined, overlay: Mapping[str, bytes], limit: int) -> None:
        self.root = root
        self.overlay = overlay
        self.limit = limit  # more matches than this are refused: each would be read

    def expand(self, pattern: str) -> list[str]:
        """The paths `pattern` matches (as sshd names them), sorted."""
        if len(os.fsencode(pattern)) >= _PATH_MAX:
            return []  # glob(3) matches nothing longer
        parts = [p for p in pattern.split("/") if p]
        if not parts:
            return ["/"]
        try:
            components = [GlobComponent(part) for part in parts]
        except _NoMatch:
            return []
        found = [""]
        for index, component in enumerate(components):
            last = index == len(components) - 1
            matcher = component if component.magic else None
            matches: list[str] = []
            for prefix in found:
                if matcher is None:
                    candidate = f"{prefix}/{component.literal}"
                    if not last or self.exists(candidate):
                        matches.append(candidate)
                    continue
                for name in self.names(prefix or "/", with_dots=matcher.literal_dot):
                    if matcher.matches(name):
                        matches.append(f"{prefix}/{name}")
            found = matches
            if len(found) > self.limit:  # each would be read: no need to list further
                raise HostError(
                    f"sshd configuration: Include {shown(pattern)} matches more than "
                    f"{self.limit} files",
                    path=shown(pattern),
                )
        return sorted(set(found) - {""}, key=os.fsencode)

    def exists(self, path: str) -> bool:
        if path in self.overlay:
            return True
        try:
            return self.root.lstat(path) is not None
        except FileTooLarge:
            raise
        except HostError:  # a link loop on the way: glob(3) finds nothing there
            return False

    def names(self, directory: str, *, with_dots: bool) -> list[str]:
        """The entries glob(3) sees in a directory, the overlay's included."""
        try:
            names = set(self.root.listdir(directory))  # [] when absent or no directory
            if with_dots:  # readdir() gives . and .., which `.*` matches, in a directory
                found = self.root.stat(directory)
                if found is not None and stat.S_ISDIR(found.st_mode):
                    names.update((".", ".."))
        except FileTooLarge:
            raise
        except HostError:  # a link loop on the way: nothing to match there
            names = set()
        prefix = directory.rstrip("/") + "/"
        names.update(
            path[len(prefix) :]
            for path in self.overlay
            if path.startswith(prefix) and "/" not in path[len(prefix) :]
        )
        return sorted(names)


class _NoMatch(Exception):
    """A pattern glob(3) matches nothing at all (it names an unknown [:class:])."""


class GlobComponent:
    """One component of a pattern, compiled as OpenBSD's glob(3) compiles it (the one
    OpenSSH builds in on Linux: glibc's lacks gl_matchc): a backslash protects the
    next character; `*`, `?` and `[…]` (`[!…]` negated, ranges, `[:class:]`) are
    magic; bytes compare as bytes; a leading `.` in a name is matched only by a
    `.` at the pattern's start."""

    def __init__(self, part: str) -> None:
        tokens = _tokens(part)
        self.literal = "".join(char for char, _ in tokens)  # the name, when not magic
        # glob0() drops the protection of an ordinary character: `\.` counts as `.`
        self.literal_dot = bool(tokens) and tokens[0][0] == "."
        # One regex piece per byte of a name, or STAR. A single regex with `.*`
        # for each `*` backtracks: `*a*a*a*a*a*a*b` against 100 `a`s ran for
        # seconds. The pieces between stars are each one fixed-width regex (no
        # repetition, nothing to backtrack), placed leftmost in turn, which is
        # where glob's own star matching settles too: the time is bounded by the
        # name's length times the pattern's.
        self.atoms, self.magic = _compile(tokens)
        pieces: list[list[str]] = [[]]
        for atom in self.atoms:
            if atom is STAR:
                pieces.append([])
            else:
                pieces[-1].append(atom)
        self.widths = [len(piece) for piece in pieces]
        self.pieces = [re.compile("".join(piece), re.DOTALL) for piece in pieces]

    def matches(self, name: str) -> bool:
        encoded = os.fsencode(name).decode("latin-1")
        if encoded.startswith(".") and not self.literal_dot:
            return False
        if len(self.pieces) == 1:  # no star: the name is exactly as wide as the pattern
            return self.pieces[0].fullmatch(encoded) is not None
        if len(encoded) < sum(self.widths):
            return False
        # The part before the first star is anchored at the start, the one after
        # the last at the end; each one between goes at its leftmost place after
        # the one before it (a later place never leaves more room for the rest).
        start = self.widths[0]
        end = len(encoded) - self.widths[-1]
        if self.pieces[0].match(encoded) is None:
            return False
        if self.pieces[-1].fullmatch(encoded, end) is None:
            return False
        for piece in self.pieces[1:-1]:
            found = piece.search(encoded, start, end)
            if found is None:
                return False
            start = found.end()
        return True


STAR = None  # an atom of a component: `*`, any run of bytes
Token = Tuple[str, bool]  # a byte (as a latin-1 character), and whether a backslash protects it
_CLOSE: Token = ("]", False)
_NOT: Token = ("!", False)


def _tokens(part: str) -> list[Token]:
    raw = os.fsencode(part).decode("latin-1")
    tokens: list[Token] = []
    index = 0
    while index < len(raw):
        if raw[index] == "\\":  # a trailing backslash protects itself
            tokens.append((raw[index + 1] if index + 1 < len(raw) else "\\", True))
            index += 2
        else:
            tokens.append((raw[index], False))
            index += 1
    return tokens


def _compile(tokens: list[Token]) -> tuple[list[Optional[str]], bool]:
    """(atoms: a regex piece matching one byte each, or STAR; whether any is magic)."""
    out: list[Optional[str]] = []
    magic = False
    index = 0
    while index < len(tokens):
        char, protected = tokens[index]
        index += 1
        if not protected and char in "*?":
            out.append(STAR if char == "*" else ".")
            magic = True
            continue
        if not protected and char == "[":
            negate = index < len(tokens) and tokens[index] == _NOT
            start = index + 1 if negate else index
            # As glob0(): with no unprotected `]` after the set's first member, `[` is
            # an ordinary character (and `!` is read again as one).
            if start < len(tokens) and _CLOSE in tokens[start + 1 :]:
                members, index = _set(tokens, start)
                out.append(_as_class(members, negate))
                magic = True
                continue
        out.append(re.escape(char))
    return out, magic


# The character classes glob(3) knows, in the C locale sshd runs in.
_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "blank": " \t",
    "cntrl": "\x00-\x1f\x7f",
    "digit": "0-9",
    "graph": "\x21-\x7e",
    "lower": "a-z",
    "print": "\x20-\x7e",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \t\n\r\x0b\x0c",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _set(tokens: list[Token], index: int) -> tuple[list[str], int]:
    """The members of a `[…]` whose first member is at `index` (as regex class
    pieces), and the index after its `]`, as glob0() reads them: the first member
    is taken as it is (even `]`), `[:name:]` is a class, `a-z` a range."""
    members: list[str] = []

    def take() -> Token:
        nonlocal index
        if index >= len(tokens):  # sshd's glob would read on past the pattern
            raise _NoMatch
        index += 1
        return tokens[index - 1]

    token = take()
    while True:
        if token == ("[", False) and tokens[index : index + 1] == [(":", False)]:
            while token == ("[", False) and tokens[index : index + 1] == [(":", False)]:
                found = _class(tokens, index)
                if found is None:
                    break  # no class: this `[` is a member
                members.append(_CLASSES[found[0]])
                index = found[1]
                token = take()
            if token == _CLOSE:
                return members, index
        if tokens[index : index + 1] == [("-", False)] and tokens[index + 1 : index + 2] != [
            _CLOSE
        ]:
            take()
            high = take()[0]
            low = token[0]
            members.append(f"{re.escape(low)}-{re.escape(high)}" if low <= high else "")
        else:
            members.append(re.escape(token[0]))
        token = take()
        if token == _CLOSE:
            return members, index


def _class(tokens: list[Token], index: int) -> Optional[tuple[str, int]]:
    """At `[` `:` (`index` at the `:`): the class name and the index after its `:]`;
    None when this is no class. _NoMatch for a class glob(3) does not know."""
    try:
        colon = tokens.index((":", False), index + 1)
    except ValueError:
        return None
    if tokens[colon + 1 : colon + 2] != [_CLOSE]:
        return None
    name_tokens = tokens[index + 1 : colon]
    name = "".join(char for char, _ in name_tokens)
    if name not in _CLASSES or any(protected for _, protected in name_tokens):
        raise _NoMatch
    return name, colon + 2


def _as_class(members: list[str], negate: bool) -> str:
    body = "".join(members)
    if not body:  # only reversed ranges: matches nothing (negated, any one byte)
        return "." if negate else "(?!)"
    return f"[^{body}]" if negate else f"[{body}]"
