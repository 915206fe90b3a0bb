"""The kernel command line the image boots with, read from its generated boot config.

What counts is what the boot loader reads (grub.cfg, BLS entries, grubenv),
not `etc/default/grub` and not the build VM's /proc/cmdline; when the template
disagrees, both are reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import shlex
from typing import Iterator, Optional, Union

from azprov.checks.kernel import is_arm64
from azprov.checks.model import Note, check, unknown
from azprov.checks.tree import Tree
from azprov.checks.versions import rpm_part_compare

GRUB_CONFIGS = ("boot/grub/grub.cfg", "boot/grub2/grub.cfg", "boot/grub/menu.lst")
NO_BOOT_LOADER = (
    "no boot loader configuration in the tree (boot/grub/grub.cfg, boot/grub2/grub.cfg,"
    " boot/loader/entries/*.conf): the kernel command line comes from outside the image"
)
BLS_DIR = "boot/loader/entries"
# grub-editenv writes its environment block as exactly 1024 bytes.
GRUBENV_BYTES = 1024
_GRUBENV_SIGNATURE = "# GRUB Environment Block\n"
# A real /boot holds a few kernels and a rescue entry, each entry a few hundred
# bytes; GRUB itself skips entries over 1 MiB. Past these, the default entry is
# unknown rather than worked out from a crafted pile.
MAX_BLS_ENTRIES = 128
MAX_BLS_ENTRY_BYTES = 64 << 10


@dataclasses.dataclass(frozen=True)
class Cmdline:
    source: Optional[str]  # the file it was read from; None: no boot loader config
    words: tuple[str, ...]
    unknown: Optional[str] = None  # why the command line cannot be told (`source`: where)

    def values(self, key: str) -> list[str]:
        return [w.split("=", 1)[1] for w in self.words if w.startswith(key + "=")]


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


def _grubenv_of(tree: Tree, config: str) -> tuple[dict[str, str], Optional[str]]:
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


def _expand(env: dict[str, str], options: str) -> tuple[str, ...]:
    options = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), options)
    try:
        return tuple(shlex.split(options))
    except ValueError:
        return tuple(options.split())


@dataclasses.dataclass(frozen=True)
class BootEntry:
    """One BLS entry as GRUB's blscfg reads it: `id` is its file name without `.conf`."""

    id: str
    path: str
    keys: tuple[tuple[str, str], ...]

    def get(self, key: str) -> Optional[str]:
        return next((value for name, value in self.keys if name == key), None)


def _entry_keys(text: str) -> tuple[tuple[str, str], ...]:
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
    return BootEntry(entry_id, path, _entry_keys(text))


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
    if digits.startswith("0x"):
        return int(digits, 16)
    return int(digits, 8) if len(digits) > 1 and digits.startswith("0") else int(digits)


def _unescaped(spec: str) -> Optional[str]:
    """`default` with GRUB's `>>` (a literal '>') undone; None when it names an
    entry inside a submenu (`Advanced>Entry`), which BLS entries never are."""
    if ">" in spec.replace(">>", ""):
        return None
    return spec.replace(">>", ">")


def _pick(menu: list[BootEntry], spec: str) -> BootEntry:
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


def _bls(tree: Tree, config: Optional[str], grub_cfg: str) -> Optional[Cmdline]:
    """The command line of the entry GRUB's blscfg boots by default."""
    env: dict[str, str] = {}
    if config is not None:
        env, why = _grubenv_of(tree, config)
        if why:
            return Cmdline(f"{config.rsplit('/', 1)[0]}/grubenv", (), why)
    ids = bls_entries(tree)
    if isinstance(ids, str):
        return Cmdline(BLS_DIR, (), f"{ids}: the default boot entry is not known")
    menu: list[BootEntry] = []
    for entry_id in ids:
        entry = _read_entry(tree, entry_id)
        if isinstance(entry, str):
            return Cmdline(BLS_DIR, (), f"{entry}: the default boot entry is not known")
        if entry.get("linux") is not None:  # blscfg makes no menu entry without one
            menu.append(entry)
    if not menu:
        return None
    chosen = _pick(menu, _default_spec(grub_cfg, env))
    options = chosen.get("options")
    if options is None:
        options = env.get("default_kernelopts", "")
    return Cmdline(chosen.path, _expand(env, options))


def _grub(tree: Tree, path: str) -> Optional[Cmdline]:
    """The default entry's kernel line: BLS entries when grub.cfg runs blscfg,
    else its first menu entry (GRUB_DEFAULT=0, what images use)."""
    text = tree.read_text(path)
    if text is None:
        return None
    lines = text.splitlines()
    if any(re.match(r"\s*blscfg\b", line) for line in lines) and tree.glob(f"{BLS_DIR}/*.conf"):
        return _bls(tree, path, text)
    for line in lines:
        words = line.split(None, 2)
        if words and words[0] in ("linux", "linuxefi", "linux16", "kernel") and len(words) > 1:
            env, _ = _grubenv_of(tree, path)  # only for $variables: the entry is the first
            return Cmdline(path, _expand(env, words[2] if len(words) > 2 else ""))
    return None


def boot_cmdline(tree: Tree) -> Cmdline:
    def find() -> Cmdline:
        for path in GRUB_CONFIGS:
            found = _grub(tree, path)
            if found:
                return found
        return _bls(tree, None, "") or Cmdline(None, ())

    return tree.memo("boot.cmdline", find)


def grub_defaults(tree: Tree) -> Optional[tuple[str, tuple[str, ...]]]:
    """GRUB_CMDLINE_LINUX + _DEFAULT from etc/default/grub then grub.d/*.cfg (later wins)."""
    files = [
        p for p in ["etc/default/grub", *tree.glob("etc/default/grub.d/*.cfg")] if tree.exists(p)
    ]
    if not files:
        return None
    values: dict[str, str] = {}
    for path in files:
        for line in tree.lines(path):
            match = re.match(r"\s*(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)", line)
            if match:
                raw = match.group(2).strip()
                with contextlib.suppress(ValueError):
                    raw = " ".join(shlex.split(raw))
                values[match.group(1)] = raw.replace("$GRUB_CMDLINE_LINUX", "")
    words = " ".join(
        [values.get("GRUB_CMDLINE_LINUX", ""), values.get("GRUB_CMDLINE_LINUX_DEFAULT", "")]
    )
    return files[-1], tuple(words.split())


FORBIDDEN = ("libata.atapi_enabled=0", "reserve=0x1f0,0x8")


@check(
    "grub-forbidden-params",
    "error",
    consequence="the emulated IDE/ATAPI path is off: no provisioning CD; LISA fails the image",
    source="LISA verify_grub",
)
def grub_forbidden_params(tree: Tree) -> Iterator[Note]:
    cmdline = boot_cmdline(tree)
    if cmdline.source is None or cmdline.unknown:
        yield unknown(
            cmdline.source or "",
            cmdline.unknown or NO_BOOT_LOADER,
            "keep libata.atapi_enabled=0 and reserve=0x1f0,0x8 off the external command line",
        )
        return
    for word in FORBIDDEN:
        if word in cmdline.words:
            yield Note(
                cmdline.source, f"has {word}", f"remove {word} and regenerate the boot config"
            )


def _console_problem(words: tuple[str, ...], wanted: str) -> Optional[str]:
    consoles = [w.split("=", 1)[1].split(",")[0] for w in words if w.startswith("console=")]
    if wanted not in consoles:
        return f"has no console={wanted}" + (
            f" (consoles: {', '.join(consoles)})" if consoles else ""
        )
    if consoles[-1] != wanted:
        return f"has console={consoles[-1]} after console={wanted} (the last one is /dev/console)"
    return None


@check(
    "serial-console",
    "error",
    consequence="no boot diagnostics or serial console, and azprov's failure reasons are not shown",
    source="LISA verify_serial_console_is_enabled; MS generic doc; azprov unit",
)
def serial_console(tree: Tree) -> Iterator[Note]:
    wanted = "ttyAMA0" if is_arm64(tree) else "ttyS0"
    cmdline = boot_cmdline(tree)
    fix = f"put console={wanted} last in GRUB_CMDLINE_LINUX, then update-grub (grub2-mkconfig)"
    if cmdline.source is None or cmdline.unknown:
        why = cmdline.unknown or NO_BOOT_LOADER
        yield unknown(cmdline.source or "", why, f"make sure it ends with console={wanted}")
        return
    problem = _console_problem(cmdline.words, wanted)
    if problem:
        yield Note(cmdline.source, problem, fix)
    defaults = grub_defaults(tree)
    if defaults and not problem and _console_problem(defaults[1], wanted):
        yield Note(
            defaults[0],
            f"{_console_problem(defaults[1], wanted)}, unlike {cmdline.source}",
            "fix the template too: the next update-grub would drop the serial console",
            severity="warn",
        )


@check(
    "cmdline-recommended",
    "info",
    consequence="boot output, slow-disk tolerance and NIC naming as Microsoft advises",
    source="MS generic/Ubuntu/RHEL docs; LISA verify_pmu_disabled_for_arm64",
)
def cmdline_recommended(tree: Tree) -> Iterator[Note]:
    cmdline = boot_cmdline(tree)
    if cmdline.source is None or cmdline.unknown:
        yield unknown(cmdline.source or "", cmdline.unknown or NO_BOOT_LOADER)
        return
    words = cmdline.words
    if not any(w.startswith("earlyprintk=") for w in words):
        yield Note(cmdline.source, "has no earlyprintk=ttyS0", "add earlyprintk=ttyS0,115200")
    if not tree.exists("etc/redhat-release") and not cmdline.values("rootdelay"):
        yield Note(cmdline.source, "has no rootdelay=300", "add rootdelay=300")
    for word in ("rhgb", "quiet"):
        if word in words:
            yield Note(
                cmdline.source, f"has {word}", f"drop {word}: boot messages go to the console"
            )
    if is_arm64(tree) and "initcall_blacklist=arm_pmu_acpi_init" not in words:
        yield Note(
            cmdline.source,
            "has no initcall_blacklist=arm_pmu_acpi_init",
            "add it (arm64)",
            severity="warn",
        )


@check(
    "efi-fallback-loader",
    "error",
    consequence="a new Gen2 VM has no NVRAM boot entry and firmware finds nothing to boot",
    source="MS Ubuntu doc (Gen2 step)",
)
def efi_fallback_loader(tree: Tree) -> Iterator[Note]:
    names = {p.lower(): p for p in tree.glob("boot/efi/*") + tree.glob("boot/efi/*/*")}
    if "boot/efi/efi" not in names:
        yield unknown(
            "boot/efi",
            "no EFI system partition in the tree (no boot/efi/EFI): a Gen1 (BIOS) image, or the ESP is not mounted",
            "for Gen2, mount the ESP at boot/efi and check again",
        )
        return
    loader = "bootaa64.efi" if is_arm64(tree) else "bootx64.efi"
    found = [
        p
        for p in tree.glob(names["boot/efi/efi"] + "/*/*")
        if p.lower().endswith("/boot/" + loader)
    ]
    if not found:
        yield Note(
            names["boot/efi/efi"] + "/BOOT",
            f"has no {loader.upper()}",
            "grub-install --removable (or debconf grub2/force_efi_extra_removable)",
        )
        return
    if tree.size(found[0]) == 0:
        yield Note(
            found[0], "is empty", "reinstall the removable loader (grub-install --removable)"
        )
