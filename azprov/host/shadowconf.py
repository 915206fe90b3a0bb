"""shadow's own settings, read as its tools (useradd, usermod, userdel) read them.

/etc/login.defs is read by getdef (shadow 4.13 lib/getdef.c): `NAME value` lines,
`#` comments, the value up to its first `"`, and the last line for a name wins.
/etc/default/useradd is read by useradd's get_defaults (src/useradd.c): `KEY=value`
lines, the key at the very start, the value all that follows the first `=`.
Both read their file with fgets into a 1024-byte buffer: a longer line is taken
as several, and a NUL byte ends what C sees of one. Reading the same way is what
lets azprov check the paths a tool will take from these files (toolpaths.py).
"""

from __future__ import annotations

from typing import Iterator, Optional

from azprov.confined import Links
from azprov.host.root import TargetRoot

LOGIN_DEFS = "/etc/login.defs"
USERADD_DEFAULTS = "/etc/default/useradd"
# login.defs is a commented list of settings (about 12 KB on Debian and Fedora) and
# useradd's defaults a dozen lines (about 1 KB). A tool reads either to its end before
# doing anything: far beyond this, it is no settings file but a trap (a sparse file).
SETTINGS_CAP = 1 << 20
# fgets(buf, 1024, fp) returns at most 1023 bytes: the rest of a line comes as the next one.
_FGETS_BYTES = 1023
_C_SPACE = b" \t\n\v\f\r"


def _c_lines(data: bytes) -> Iterator[bytes]:
    """The strings a C loop of `fgets(buf, 1024, fp)` sees, newline kept."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start, start + _FGETS_BYTES)
        end = start + _FGETS_BYTES if end < 0 else end + 1
        yield data[start:end].split(b"\0", 1)[0]
        start = end


def login_defs(data: Optional[bytes]) -> dict[str, str]:
    """name -> value of a login.defs, as getdef reads it (absent file: {})."""
    found: dict[str, str] = {}
    for raw in _c_lines(data or b""):
        line = raw.rstrip(_C_SPACE).lstrip(b" \t")
        if not line or line.startswith(b"#"):
            continue
        cut = min((i for i in (line.find(b" "), line.find(b"\t")) if i >= 0), default=-1)
        if cut < 0:
            continue  # a name without a value
        value = line[cut + 1 :].lstrip(b' "\t').split(b'"', 1)[0]
        found[line[:cut].decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return found


def useradd_defaults(data: Optional[bytes]) -> dict[str, str]:
    """KEY -> value of /etc/default/useradd, as useradd's get_defaults reads it."""
    found: dict[str, str] = {}
    for raw in _c_lines(data or b""):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        key, equals, value = line.partition(b"=")
        if equals:
            found[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return found


def read_settings(root: TargetRoot, path: str, links: Links = Links.REFUSE) -> Optional[bytes]:
    """One of the two files, whole, through the door (None when absent). The tools follow
    a link there as the host sees it, so a tool's preflight refuses one (the default)."""
    return root.read(path, SETTINGS_CAP, links=links)
