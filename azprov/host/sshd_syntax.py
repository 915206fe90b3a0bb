"""sshd_config's syntax, line by line, as OpenSSH's sshd takes it (servconf.c,
misc.c of 8.7 and later): how a file becomes lines, a line a keyword and its
words, and whether a Match line matches at start. `azprov.host.sshd_config`
reads whole configurations with these.
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

_WHITESPACE = " \t\r\n"
# Where sshd's strdelim() ends the keyword: whitespace, a quote or an `=`.
_DELIMITER = re.compile(r'[ \t\r\n"=]')
_PLAIN_ARGUMENTS = re.compile(r"[^\\\"'#]*")
_SPACES = re.compile(r"[ \t]+")
# `Match` criteria other than `all`: those that take no argument, and the others.
_BARE_CRITERIA = frozenset({"invalid-user"})
_CRITERIA = frozenset(
    {"user", "group", "host", "address", "localaddress", "localport", "rdomain", "version"}
)


class Refused(Exception):
    """A line sshd reports as bad; with one, sshd refuses the whole configuration."""


def logical_lines(data: bytes) -> Iterator[tuple[str, tuple[int, int]]]:
    """The lines sshd parses (text without the newline) with the bytes each came from.

    load_server_config() drops leading spaces, tabs and CRs from every line it
    reads and keeps its text only up to a NUL, so a NUL also drops that line's
    newline and the next line continues it.
    """
    pending: list[bytes] = []
    start = 0
    offset = 0
    size = len(data)
    while offset < size:
        end = data.find(b"\n", offset)
        end = size if end < 0 else end + 1
        text = data[offset:end].lstrip(b" \t\r")
        cut = text.find(b"\0")
        if cut >= 0:
            pending.append(text[:cut])
        elif text.endswith(b"\n"):
            pending.append(text[:-1])
            yield b"".join(pending).decode("utf-8", "surrogateescape"), (start, end)
            pending, start = [], end
        else:
            pending.append(text)
        offset = end
    if pending:
        yield b"".join(pending).decode("utf-8", "surrogateescape"), (start, size)


def split_line(line: str) -> Optional[tuple[str, list[str]]]:
    """(keyword in lower case, arguments), or None for a line sshd skips (blank,
    comment, an unclosed quote in the keyword). `Refused` for a line sshd
    reports as bad: a keyword with no argument, an unclosed quote after it."""
    if not line:
        return None
    line = line[0] + line[1:].rstrip(_WHITESPACE + "\f")  # sshd never strips the first char
    keyword, rest = strdelim(line)
    if keyword == "" and rest is not None:  # the line began with a delimiter (`=`)
        keyword, rest = strdelim(rest)
    if not keyword or keyword.startswith("#"):
        return None
    if not rest:
        raise Refused(f"no argument after keyword {keyword!r}")
    return keyword.lower(), argv_split(rest)


def strdelim(text: str) -> tuple[Optional[str], Optional[str]]:
    """sshd's strdelim(): the first word and the rest (None when nothing follows).
    The word ends at whitespace, a quote (which opens a quoted word) or one `=`;
    whitespace, and one `=` if none ended the word, are skipped after it."""
    found = _DELIMITER.search(text)
    if found is None:
        return text, None
    at = found.start()
    if text[at] == '"':
        text = text[:at] + text[at + 1 :]
        close = text.find('"', at)
        if close < 0:
            return None, None
        return text[:close], text[close + 1 :].lstrip(_WHITESPACE)
    rest = text[at + 1 :].lstrip(_WHITESPACE)
    if text[at] != "=" and rest.startswith("="):
        rest = rest[1:].lstrip(_WHITESPACE)
    return text[:at], rest


def argv_split(text: str) -> list[str]:
    """sshd's argv_split(…, terminate_on_comment=1): words split at spaces and
    tabs, `"…"` and `'…'` quoting, `\\` escaping a quote, a backslash or (outside
    quotes) a space; a word starting with `#` ends the line. `Refused` when a
    quote is left open."""
    plain = _PLAIN_ARGUMENTS.fullmatch(text)
    if plain is not None:  # nothing to unquote: the common case, done fast
        return [word for word in _SPACES.split(text) if word]
    words: list[str] = []
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char in " \t":
            index += 1
            continue
        if char == "#":
            break
        quote = ""
        word: list[str] = []
        while index < size:
            char = text[index]
            following = text[index + 1] if index + 1 < size else ""
            if char == "\\":
                if following in ("'", '"', "\\") or (not quote and following == " "):
                    index += 1
                    word.append(following)
                else:
                    word.append(char)  # an escape sshd does not know keeps its backslash
            elif not quote and char in " \t":
                break
            elif not quote and char in "\"'":
                quote = char
            elif quote and char == quote:
                quote = ""
            else:
                word.append(char)
            index += 1
        words.append("".join(word))
        if index >= size:
            if quote:
                raise Refused("invalid quotes")
            break
        index += 1
    return words


def match_all(args: list[str]) -> Optional[bool]:
    """Whether a Match line matches while sshd reads its configuration at start,
    with no connection: only `Match all` does. None when sshd refuses the line.

    The criteria OpenSSH 10 added (`invalid-user`, `version`, `User=x`) are taken
    as conditional rather than refused: the image's sshd may be that new, and
    `Match version` compares its own version, which azprov cannot know."""
    words = args
    attributes = 0
    index = 0
    while index < len(words):
        attribute = words[index]
        index += 1
        if attribute.startswith("#"):
            break
        attributes += 1
        lowered = attribute.lower()
        if lowered == "all":  # alone, or followed only by a comment
            following = words[index] if index < len(words) else ""
            if attributes > 1 or (following != "" and not following.startswith("#")):
                return None
            return True
        if lowered in _BARE_CRITERIA:
            continue
        name, equals, _ = lowered.partition("=")
        if equals and name in _CRITERIA:
            continue
        if lowered not in _CRITERIA:
            return None
        argument = words[index] if index < len(words) else ""
        index += 1
        if argument == "" or argument.startswith("#"):
            return None
    if attributes == 0:
        return None
    return False


def shown(path: str) -> str:
    """A path for a message: bounded, one line."""
    text = path if len(path) <= 200 else path[:197] + "..."
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\n", "\\n")
