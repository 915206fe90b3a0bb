"""The SSH host keys an image has, and their fingerprints as ssh-keygen prints them.

Logged at first boot: the serial console (Azure boot diagnostics) shows them, so a
user can check the key offered on their first SSH connection.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import logging
import stat
from typing import Optional

from azprov.confined import Confined
from azprov.errors import HostError

log = logging.getLogger(__name__)

SSH_DIR = "/etc/ssh"
# A public key is at most a few KB (RSA-16384: 2.8 KB).
_PUBLIC_KEY_CAP = 64 << 10
_CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}


def existing_host_keys(root: Confined) -> list[str]:
    """The private host keys present in the root (in-tree paths), sorted."""
    found = []
    for name in root.listdir(SSH_DIR):
        if fnmatch.fnmatchcase(name, "ssh_host_*_key"):
            key = root.stat(f"{SSH_DIR}/{name}")
            if key is not None and stat.S_ISREG(key.st_mode):
                found.append(f"{SSH_DIR}/{name}")
    return found


def fingerprints(root: Confined) -> list[str]:
    """`256 SHA256:… (ED25519)` for each host key, as `ssh-keygen -l` prints it, less the
    comment (often root@<image build host>: only size, digest and type matter).

    Computed here from the public half: one ssh-keygen process per key costs more
    than the arithmetic, on the path to sshd.
    """
    lines = []
    for key in existing_host_keys(root):
        try:
            public = root.read_text(f"{key}.pub", _PUBLIC_KEY_CAP)
        except HostError:
            public = None
        line = _fingerprint(public) if public is not None else None
        if line is None:
            log.warning("SSH host key %s has no readable public half", key)
            continue
        lines.append(line)
    return lines


def _fingerprint(public: str) -> Optional[str]:
    fields = public.split()
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
