"""SSH host keys: create them on a generalized image before sshd first starts.

`azprov deprovision` removes the host keys, so every VM made from the image
gets its own. On first boot `provision` creates them again (the distro's
sshd would refuse to start without any) and logs their fingerprints, which
the serial console (Azure boot diagnostics) shows, so a user can check the
key offered on their first SSH connection.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from azprov.config_values import KNOWN_TYPES, parse_key_types
from azprov.errors import HostError
from azprov.host.files import read_regular, write_atomic
from azprov.host.root import TargetRoot
from azprov.host.sshd import configured_values

log = logging.getLogger(__name__)

SSH_DIR = "/etc/ssh"
# Present only while a new key set is being installed (see _move_into_root); beside
# the keys, so it goes wherever they go (and an image with its own /etc/ssh gets no
# other directory for it).
INCOMPLETE = f"{SSH_DIR}/.azprov-host-keys-incomplete"


def existing_host_keys(root: TargetRoot) -> list[Path]:
    """The private host keys present in the root, sorted."""
    ssh_dir = root / SSH_DIR
    if not ssh_dir.is_dir():
        return []
    return sorted(p for p in ssh_dir.glob("ssh_host_*_key") if p.is_file())


# The types a generalized image gets unless configured. RSA is left out: OpenSSH 8.8
# and later (Debian 12 ships 9.2) refuse the SHA-1 "ssh-rsa" signature by default, so
# only a client with the SHA-2 RSA signatures (OpenSSH 7.2 and later) can use an RSA
# host key, and those clients also take ECDSA (OpenSSH 5.7) and Ed25519 (6.5). RSA-3072
# generation is the one slow step on the way to sshd: 0.4-2.9 s of CPU on this
# project's build machine, 2-34 s under emulation, at random.
DEFAULT_TYPES = ("ed25519", "ecdsa")
# Fedora's and RHEL's sshd.service wants sshd-keygen.target, which wants
# sshd-keygen@<type>.service for rsa, ecdsa and ed25519, each run when its key is
# missing (ConditionFileNotEmpty=|!/etc/ssh/ssh_host_%i_key).
_KEYGEN_TARGET = "sshd-keygen.target"
# (No /lib: the images that have sshd-keygen.target, Fedora and RHEL, merged /usr long ago.)
_UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system")
_KEYGEN_INSTANCE = re.compile(r"sshd-keygen@(\w+)\.service")


_HOST_KEY_PATH = re.compile(r"/etc/ssh/ssh_host_(\w+)_key")


def default_key_types(root: TargetRoot) -> list[str]:
    """ed25519 and ecdsa, and any other type the image's sshd asks for by name
    (`HostKey /etc/ssh/ssh_host_rsa_key`: without it sshd complains, or with it
    alone does not start) or makes itself at its start when missing (Fedora/RHEL:
    sshd-keygen@rsa.service, which sshd would wait for anyway, only later and with
    no fingerprint on the console). Masking sshd-keygen@rsa.service leaves RSA out.

    Never raises: this runs before anything can be reported, so an image whose
    setup cannot be read gets the plain default and a warning.
    """
    types = list(DEFAULT_TYPES)
    try:
        extra = _configured_types(root) + _distro_keygen_types(root)
    except (HostError, OSError) as exc:
        log.warning("SSH host key types: the image's sshd setup is unreadable (%s)", exc)
        return types
    for kind in extra:
        if kind not in types:
            types.append(kind)
    return types


def _configured_types(root: TargetRoot) -> list[str]:
    """The standard host key types the image's sshd configuration names in HostKey."""
    found = [_HOST_KEY_PATH.fullmatch(path) for path in configured_values(root, "HostKey")]
    return [m.group(1).lower() for m in found if m and m.group(1).lower() in KNOWN_TYPES]


def _distro_keygen_types(root: TargetRoot) -> list[str]:
    """The types sshd-keygen.target wants (its Wants= lines and .wants links) and
    whose instance is not masked, if any."""
    if any(_masked(root, name) for name in (_KEYGEN_TARGET, "sshd-keygen@.service")):
        return []
    found: list[str] = []
    for unit_dir in _UNIT_DIRS:
        text = read_regular(root / f"{unit_dir}/{_KEYGEN_TARGET}", 65536)
        if text is not None:
            found += _KEYGEN_INSTANCE.findall(text.decode("utf-8", "replace"))
            break  # the first found is the one systemd uses
    for unit_dir in _UNIT_DIRS:
        found += _KEYGEN_INSTANCE.findall(
            " ".join(root.listdir(f"{unit_dir}/{_KEYGEN_TARGET}.wants"))
        )
    return [
        kind
        for kind in found
        if kind in KNOWN_TYPES and not _masked(root, f"sshd-keygen@{kind}.service")
    ]


def _masked(root: TargetRoot, unit: str) -> bool:
    """Masked: a link to /dev/null (or an empty file) in /etc/systemd/system."""
    path = root / f"/etc/systemd/system/{unit}"
    if path.is_symlink():
        return os.readlink(path) == "/dev/null"
    return path.is_file() and path.stat().st_size == 0


def ensure_host_keys(root: TargetRoot, key_types: Optional[str]) -> list[str]:
    """Create the host keys when the image has none; return one fingerprint line per key.

    An image that already carries host keys keeps them untouched: only a
    generalized image (no keys at all) gets new ones. With `key_types` None the
    types are `default_key_types`; empty, `ssh-keygen -A` creates every type the
    installed OpenSSH defaults to; otherwise exactly the listed types are created.
    """
    pending = start_host_keys(root, key_types)
    return pending.install() if pending else fingerprints(root)


def start_host_keys(root: TargetRoot, key_types: Optional[str]) -> Optional[PendingHostKeys]:
    """Start making host keys in the background if the image has none (else None)."""
    wanted = parse_key_types(key_types) if key_types is not None else None
    if existing_host_keys(root) and not (root / INCOMPLETE).exists():
        return None
    return PendingHostKeys(root, default_key_types(root) if wanted is None else wanted)


class PendingHostKeys:
    """Host keys being made in a private directory, reaching /etc/ssh only on `install()`.

    Key generation is CPU-bound (RSA takes seconds on a small or emulated VM),
    so provisioning starts it first thing and lets it run beside everything
    else; if provisioning then fails, `cancel()` leaves the image unchanged.
    """

    def __init__(self, root: TargetRoot, key_types: list[str]) -> None:
        self.root = root
        self.workdir = Path(tempfile.mkdtemp(prefix="azprov-hostkeys-"))  # 0700
        self.ssh_dir = self.workdir / SSH_DIR.lstrip("/")
        self.ssh_dir.mkdir(parents=True)
        self.processes: list[subprocess.Popen[bytes]] = []
        # A failure to start (no ssh-keygen) is raised by install(), after Ready:
        # Ready does not depend on host keys, and this runs before anything can report.
        self.start_error: Optional[HostError] = None
        try:
            self._start(key_types)
        except HostError as exc:
            self.start_error = exc

    def _start(self, key_types: list[str]) -> None:
        # -N "" : host keys have no passphrase; sshd must read them unattended.
        # Without types, -A -f DIR writes every default type below DIR/etc/ssh.
        commands = [
            [
                "ssh-keygen",
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-C",
                "",
                "-f",
                str(self.ssh_dir / f"ssh_host_{kind}_key"),
            ]
            for kind in key_types
        ] or [["ssh-keygen", "-A", "-f", str(self.workdir)]]
        for argv in commands:  # appended one by one: cancel() must see every one started
            self.processes.append(self.root.start(argv))

    def install(self) -> list[str]:
        """Wait for the keys, move them into the root's /etc/ssh, return their fingerprints."""
        try:
            if self.start_error is not None:
                raise self.start_error
            for process in self.processes:
                _, stderr = process.communicate()
                if process.returncode != 0:
                    detail = stderr.decode("utf-8", "replace").strip().splitlines()
                    raise HostError(
                        "creating SSH host keys: ssh-keygen exited with status "
                        f"{process.returncode}: {detail[-1] if detail else 'no message'}"
                    )
            self._move_into_root()
            log.info("created SSH host keys in %s", SSH_DIR)
        finally:
            self.cancel()
        return fingerprints(self.root)

    def _move_into_root(self) -> None:
        """All the keys or none: a partial set would read as "the image has keys" on
        the next boot, which would then never make the missing ones. A failure removes
        what was written; a power loss leaves INCOMPLETE, which makes the next boot
        generate the whole set again."""
        target = self.root / SSH_DIR
        target.mkdir(mode=0o755, parents=True, exist_ok=True)
        incomplete = self.root / INCOMPLETE
        write_atomic(incomplete, b"", mode=0o600)
        written: list[Path] = []
        try:
            for made in sorted(self.ssh_dir.iterdir()):
                private = not made.name.endswith(".pub")
                mode = 0o600 if private else 0o644
                write_atomic(target / made.name, made.read_bytes(), mode=mode, owner=(0, 0))
                written.append(target / made.name)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        incomplete.unlink()

    def cancel(self) -> None:
        """Stop any key generation still running and remove the private directory."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def fingerprints(root: TargetRoot) -> list[str]:
    """`256 SHA256:… (ED25519)` for each host key, as `ssh-keygen -l` prints it, less the
    comment (often root@<image build host>: only size, digest and type matter).

    Computed here from the public half: one ssh-keygen process per key costs more
    than the arithmetic, on the path to sshd.
    """
    lines = []
    for key in existing_host_keys(root):
        public = key.with_name(key.name + ".pub")
        line = _fingerprint(public) if public.is_file() else None
        if line is None:
            log.warning("SSH host key %s has no readable public half", root.outside_view(key))
            continue
        lines.append(line)
    return lines


_CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}


def _fingerprint(public: Path) -> Optional[str]:
    fields = public.read_text(encoding="ascii", errors="replace").split()
    try:
        blob = base64.b64decode(fields[1], validate=True)
    except (IndexError, ValueError):
        return None
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    kind = fields[0]
    if kind == "ssh-ed25519":
        bits, label = 256, "ED25519"
    elif kind.startswith("ecdsa-sha2-") and kind[11:] in _CURVE_BITS:
        bits, label = _CURVE_BITS[kind[11:]], "ECDSA"
    elif kind == "ssh-rsa":
        bits, label = _rsa_bits(blob), "RSA"
    else:
        return None
    return f"{bits} SHA256:{digest} ({label})"


def _rsa_bits(blob: bytes) -> int:
    """The modulus size of an ssh-rsa public key blob: string type, mpint e, mpint n."""
    offset, fields = 0, []
    for _ in range(3):
        length = int.from_bytes(blob[offset : offset + 4], "big")
        fields.append(blob[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return int.from_bytes(fields[2], "big").bit_length()
