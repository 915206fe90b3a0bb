"""GRUB's menu of BLS entries as RHEL's and Fedora's blscfg builds it, and the
entry it boots by default.

blscfg names each entry by its file name without `.conf` (its id), splits the id
into name-version-release at its last two '-' and lists the entries newest first
by its copy of rpmvercmp; only entries with a `linux` key become menu entries.
grub.cfg then sets `default` (grub-reboot's `next_entry`, else its own value,
`${saved_entry}` under GRUB_DEFAULT=saved, both from grubenv), and the menu
takes the entry with that id, else that title, else at that number, else the
first. Everything read is bounded: grubenv to GRUB's 1024-byte block, at most
MAX_BLS_ENTRIES entries of MAX_BLS_ENTRY_BYTES each.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Optional, Union

from azprov.checks.tree import Tree
from azprov.checks.versions import rpm_part_compare

BLS_DIR = "boot/loader/entries"
# grub-editenv writes its environment block as exactly 1024 bytes.
GRUBENV_BYTES = 1024
_GRUBENV_SIGNATURE = "# GRUB Environment Block\n"
# A real /boot holds a few kernels and a rescue entry, each entry a few hundred
# bytes; GRUB itself skips entries over 1 MiB. Past these, the default entry is
# unknown rather than worked out from a crafted pile.
MAX_BLS_ENTRIES = 128
MAX_BLS_ENTRY_BYTES = 64 << 10


def grubenv(text: str) -> dict[str, str]:
    """The variables of a GRUB environment block, read as GRUB's loadenv reads
    them: nothing without the signature, `#` lines skipped, `\\` escaping the
    next character, and reading stops at the first broken record."""
    if not text.startswith(_GRUBENV_SIGNATURE):
        return {}
    found: dict[str, str] = {}
    at, end = len(_GRUBENV_SIGNATURE), len(text)
    while at < end:
        if text[at] != "#":
            equals = text.find("=", at)
            if equals < 0:
                break
            value: list[str] = []
            cursor = equals + 1
            while cursor < end and text[cursor] != "\n":
                if text[cursor] == "\\":
                    cursor += 1
                if cursor < end:
                    value.append(text[cursor])
                cursor += 1
            if cursor >= end:
                break  # no newline after the value: GRUB drops it and stops
            found[text[at:equals]] = "".join(value)
            at = cursor
        newline = text.find("\n", at)
        at = end if newline < 0 else newline + 1
    return found


def read_grubenv(tree: Tree, config: str) -> tuple[dict[str, str], Optional[str]]:
    """The variables of the grubenv beside `config` (GRUB's
    `${config_directory}/grubenv`), and why they are unknown when it is there
    but cannot be an environment block."""
    path = f"{config.rsplit('/', 1)[0]}/grubenv"
    why = tree.unreadable(path, cap=GRUBENV_BYTES)
    if why:
        size = tree.size(path)
        shown = f"{size} bytes, larger than GRUB's {GRUBENV_BYTES}-byte block" if size else why
        return {}, f"{path} is {shown}: the default boot entry is not known"
    return grubenv(tree.read_text(path, GRUBENV_BYTES) or ""), None


@dataclasses.dataclass(frozen=True)
class BootEntry:
    """One BLS entry as GRUB's blscfg reads it: `id` is its file name without `.conf`."""

    id: str
    path: str
    keys: tuple[tuple[str, str], ...]

    def get(self, key: str) -> Optional[str]:
        return next((value for name, value in self.keys if name == key), None)


def entry_keys(text: str) -> tuple[tuple[str, str], ...]:
    """`key value` lines as blscfg splits them: leading blanks and `#` lines
    skipped, the key up to the first space (a tab only when there is none), and
    the first line without a value (a blank line too) ends the entry."""
    keys = []
    for raw in text.split("\n"):
        line = raw.lstrip(" \t")
        if line.startswith("#"):
            continue
        cut = line.find(" ")
        if cut < 0:
            cut = line.find("\t")
        if cut < 0 or cut + 1 == len(line):
            break
        keys.append((line[:cut], line[cut + 1 :].lstrip(" \t")))
    return tuple(keys)


def _split_nvr(entry_id: str) -> tuple[str, str, str]:
    """GRUB's split_package_string: the release after the last '-', the version
    after the one before it, the rest the name; with one '-' only, what follows
    it is the version."""
    rest, release = entry_id.rsplit("-", 1) if "-" in entry_id else (entry_id, None)
    name, version = rest.rsplit("-", 1) if "-" in rest else (rest, None)
    if version is None:
        version, release = release, None
    return name, version or "", release or ""


def _newer_first(a: str, b: str) -> int:
    """blscfg's order of two entry ids: name, version, release by GRUB's copy of
    rpmvercmp (no '^'), the newest first."""
    for ours, theirs in zip(_split_nvr(a), _split_nvr(b)):
        found = rpm_part_compare(ours, theirs, caret=False)
        if found:
            return -found
    return 0


def bls_entries(tree: Tree) -> Union[list[str], str]:
    """The BLS entry ids in GRUB's menu order (newest first, one of any two that
    compare equal), or why they are not worked out."""
    names = [
        n[: -len(".conf")]
        for n in tree.listdir(BLS_DIR)
        if n.endswith(".conf") and len(n) > len(".conf") and not n.startswith(".")
    ]
    if len(names) > MAX_BLS_ENTRIES:
        return f"{BLS_DIR} holds {len(names)} entries, more than the {MAX_BLS_ENTRIES} read"
    ordered: list[str] = []
    for name in sorted(names, key=functools.cmp_to_key(_newer_first)):
        if not ordered or _newer_first(ordered[-1], name):
            ordered.append(name)
    return ordered


def _read_entry(tree: Tree, entry_id: str) -> Union[BootEntry, str]:
    path = f"{BLS_DIR}/{entry_id}.conf"
    why = tree.unreadable(path, cap=MAX_BLS_ENTRY_BYTES)
    if why:
        return f"{path} is {why}"
    text = tree.read_text(path, MAX_BLS_ENTRY_BYTES) or ""
    return BootEntry(entry_id, path, entry_keys(text))


def _default_spec(grub_cfg: str, env: dict[str, str]) -> str:
    """What GRUB's `default` is when the menu shows: grub-reboot's next_entry,
    else grub.cfg's own `set default=` (`${saved_entry}` under GRUB_DEFAULT=saved)."""
    if env.get("next_entry"):
        return env["next_entry"]
    spec = "0"
    for line in grub_cfg.splitlines():
        match = re.match(r"\s*set\s+default=(.*)$", line)
        if not match or "next_entry" in match.group(1):
            continue
        value = match.group(1).strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            spec = value[1:-1]
        else:
            spec = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value.strip('"'))
    return spec


def _menu_number(spec: str) -> Optional[int]:
    """`default` as a menu position, as GRUB reads it (strtoul, base 0: `0x1f`
    hexadecimal, `017` octal), or None when it is not a number and nothing else."""
    match = re.fullmatch(r"[ \t\n\r]*(0x[0-9a-fA-F]+|0[0-7]+|[0-9]+)", spec)
    if match is None:
        return None
    digits = match.group(1)
    if len(digits) > 24:  # past an unsigned long in any base: GRUB's strtoul overflows
        return None  # (and int() of a million decimal digits is quadratic on 3.9)
    if digits.startswith("0x"):
        return int(digits, 16)
    return int(digits, 8) if len(digits) > 1 and digits.startswith("0") else int(digits)


def _unescaped(spec: str) -> Optional[str]:
    """`default` with GRUB's `>>` (a literal '>') undone; None when it names an
    entry inside a submenu (`Advanced>Entry`), which BLS entries never are."""
    if ">" in spec.replace(">>", ""):
        return None
    return spec.replace(">>", ">")


def pick_default(menu: list[BootEntry], spec: str) -> BootEntry:
    """GRUB's choice of the default menu entry: the one whose id is `spec`, else
    whose title is, else at its number; anything else is the first entry."""
    wanted = _unescaped(spec)
    if wanted is not None and wanted and not re.search(r"[ \t\n\r]", wanted):
        for entry in menu:
            if entry.id == wanted:
                return entry
    if wanted is not None:
        for entry in menu:
            if entry.get("title") == wanted:
                return entry
    number = _menu_number(spec)
    return menu[number] if number is not None and number < len(menu) else menu[0]


def bls_menu(tree: Tree) -> Union[list[BootEntry], str]:
    """The menu entries blscfg makes, in its order; or why they are not known
    (too many entries, one too large or unreadable)."""
    ids = bls_entries(tree)
    if isinstance(ids, str):
        return ids
    menu: list[BootEntry] = []
    for entry_id in ids:
        entry = _read_entry(tree, entry_id)
        if isinstance(entry, str):
            return entry
        if entry.get("linux") is not None:  # blscfg makes no menu entry without one
            menu.append(entry)
    return menu


def default_entry(menu: list[BootEntry], grub_cfg: str, env: dict[str, str]) -> BootEntry:
    """The entry GRUB boots by default, from grub.cfg's text and grubenv's variables."""
    return pick_default(menu, _default_spec(grub_cfg, env))
