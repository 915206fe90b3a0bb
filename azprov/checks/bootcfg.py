"""The kernel command line the image boots with, read from its generated boot config.

What counts is what the boot loader reads (grub.cfg, BLS entries, grubenv),
not `etc/default/grub` and not the build VM's /proc/cmdline; when the template
disagrees, both are reported.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Optional

from azprov.checks.grubmenu import BLS_DIR, bls_menu, default_entry, read_grubenv
from azprov.checks.kernel import is_arm64
from azprov.checks.model import Note, check, unknown
from azprov.checks.tree import Tree

GRUB_CONFIGS = ("boot/grub/grub.cfg", "boot/grub2/grub.cfg", "boot/grub/menu.lst")
NO_BOOT_LOADER = (
    "no boot loader configuration in the tree (boot/grub/grub.cfg, boot/grub2/grub.cfg,"
    " boot/loader/entries/*.conf): the kernel command line comes from outside the image"
)


@dataclasses.dataclass(frozen=True)
class Cmdline:
    source: Optional[str]  # the file it was read from; None: no boot loader config
    words: tuple[str, ...]
    unknown: Optional[str] = None  # why the command line cannot be told (`source`: where)

    def values(self, key: str) -> list[str]:
        return [w.split("=", 1)[1] for w in self.words if w.startswith(key + "=")]


# A shell word as shlex.split(posix=True) reads one: unquoted characters, a backslash
# and the character it escapes, '…' taken as it is, "…" with \\ and \" escaped.
_WORD = re.compile(r"""(?:[^ \t\r\n'"\\]+|\\.|'[^']*'|"(?:[^"\\]|\\.)*")+""", re.S)
_PIECE = re.compile(
    r"([^ \t\r\n'\"\\]+)" + r"|\\(.)" + r"|'([^']*)'" + r'|"((?:[^"\\]|\\.)*)"', re.S
)
_BLANKS = " \t\r\n"
_SPACE = re.compile(r"[ \t\r\n]*")
_ESCAPED_IN_DOUBLE = re.compile(r'\\([\\"])')  # inside "…" a backslash escapes only \ and "


def shell_words(text: str) -> Optional[tuple[str, ...]]:
    """`text` split as shlex.split does, in linear time (shlex adds a word's characters
    one at a time to a string: quadratic, 50 s for a megabyte); None where shlex raises
    (a quote left open, a backslash at the end)."""
    words: list[str] = []
    at = 0
    while True:
        blanks = _SPACE.match(text, at)
        at = blanks.end() if blanks else at
        if at == len(text):
            return tuple(words)
        word = _WORD.match(text, at)
        if word is None or (word.end() < len(text) and text[word.end()] not in _BLANKS):
            return None
        quoted = word.group()
        plain = not ("'" in quoted or '"' in quoted or "\\" in quoted)
        words.append(quoted if plain else "".join(map(_unquoted, _PIECE.finditer(quoted))))
        at = word.end()


def _unquoted(piece: re.Match[str]) -> str:
    plain, escaped, single, double = piece.groups()
    if double is None:
        return plain if plain is not None else escaped if escaped is not None else single
    return _ESCAPED_IN_DOUBLE.sub(r"\1", double) if "\\" in double else double


def _expand(env: dict[str, str], options: str) -> tuple[str, ...]:
    options = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), options)
    words = shell_words(options)
    return tuple(options.split()) if words is None else words


def _bls(tree: Tree, config: Optional[str], grub_cfg: str) -> Optional[Cmdline]:
    """The command line of the entry GRUB's blscfg boots by default."""
    env: dict[str, str] = {}
    if config is not None:
        env, why = read_grubenv(tree, config)
        if why:
            return Cmdline(f"{config.rsplit('/', 1)[0]}/grubenv", (), why)
    menu = bls_menu(tree)
    if isinstance(menu, str):
        return Cmdline(BLS_DIR, (), f"{menu}: the default boot entry is not known")
    if not menu:
        return None
    chosen = default_entry(menu, grub_cfg, env)
    options = chosen.get("options")
    if options is None:  # blscfg's fallback
        options = env.get("default_kernelopts", "")
    return Cmdline(chosen.path, _expand(env, options))


def _grub(tree: Tree, path: str) -> Optional[Cmdline]:
    """The default entry's kernel line: BLS entries when grub.cfg runs blscfg,
    else its first menu entry (GRUB_DEFAULT=0, what images use)."""
    why = tree.unreadable(path)
    if why:  # there, but not read: what GRUB boots is not known (it is not absent)
        return Cmdline(path, (), f"{path} is {why}")
    text = tree.read_text(path)
    if text is None:
        return None
    lines = text.splitlines()
    if any(re.match(r"\s*blscfg\b", line) for line in lines) and tree.glob(f"{BLS_DIR}/*.conf"):
        return _bls(tree, path, text)
    for line in lines:
        words = line.split(None, 2)
        if words and words[0] in ("linux", "linuxefi", "linux16", "kernel") and len(words) > 1:
            env, _ = read_grubenv(tree, path)  # only for $variables: the entry is the first
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
                unquoted = shell_words(raw)
                if unquoted is not None:
                    raw = " ".join(unquoted)
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
