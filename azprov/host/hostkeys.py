"""SSH host keys: create them on a generalized image before sshd first starts.

`azprov deprovision` removes the host keys, so every VM made from the image
gets its own. On first boot `provision` creates them again (the distro's
sshd would refuse to start without any) and logs their fingerprints, which
the serial console (Azure boot diagnostics) shows, so a user can check the
key offered on their first SSH connection.
"""

from __future__ import annotations

import logging
from pathlib import Path

from azprov.errors import ConfigError
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

SSH_DIR = "/etc/ssh"

# The types OpenSSH still accepts as host keys. DSA is gone from OpenSSH 9.8.
KNOWN_TYPES = ("rsa", "ecdsa", "ed25519")


def parse_key_types(text: str) -> list[str]:
    """`ssh_host_key_types` ("ed25519, rsa") as a list; empty means ssh-keygen's defaults."""
    types: list[str] = []
    for item in text.replace(",", " ").split():
        name = item.strip().lower()
        if name not in KNOWN_TYPES:
            raise ConfigError(
                f"[provisioning] ssh_host_key_types: {item!r} is not a host key type"
                f" (use {', '.join(KNOWN_TYPES)})"
            )
        if name not in types:
            types.append(name)
    return types


def existing_host_keys(root: TargetRoot) -> list[Path]:
    """The private host keys present in the root, sorted."""
    ssh_dir = root / SSH_DIR
    if not ssh_dir.is_dir():
        return []
    return sorted(p for p in ssh_dir.glob("ssh_host_*_key") if p.is_file())


def ensure_host_keys(root: TargetRoot, key_types: str) -> list[str]:
    """Create the host keys when the image has none; return one fingerprint line per key.

    An image that already carries host keys keeps them untouched: only a
    generalized image (no keys at all) gets new ones. With `key_types` empty
    `ssh-keygen -A` creates every type the installed OpenSSH defaults to;
    otherwise exactly the listed types are created.
    """
    wanted = parse_key_types(key_types)
    if not existing_host_keys(root):
        (root / SSH_DIR).mkdir(mode=0o755, parents=True, exist_ok=True)
        if wanted:
            for key_type in wanted:
                _generate(root, key_type)
        else:
            # -f ROOT makes ssh-keygen -A write below ROOT/etc/ssh instead of /etc/ssh.
            prefix = [] if root.live else ["-f", str(root.path)]
            root.run(["ssh-keygen", "-A", *prefix], what="creating SSH host keys")
        log.info("created SSH host keys in %s", SSH_DIR)
    return fingerprints(root)


def _generate(root: TargetRoot, key_type: str) -> None:
    path = root / f"{SSH_DIR}/ssh_host_{key_type}_key"
    # -N "" : host keys have no passphrase; sshd must read them unattended.
    root.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", "", "-f", str(path)],
        what=f"creating the {key_type} SSH host key",
    )


def fingerprints(root: TargetRoot) -> list[str]:
    """`256 SHA256:… (ED25519)` for each host key, as `ssh-keygen -l` prints it."""
    lines = []
    for key in existing_host_keys(root):
        public = key.with_name(key.name + ".pub")
        if not public.is_file():
            log.warning("SSH host key %s has no public half", root.outside_view(key))
            continue
        result = root.run(
            ["ssh-keygen", "-l", "-f", str(public)],
            what=f"reading the fingerprint of {root.outside_view(public)}",
        )
        text = result.stdout.decode("utf-8", "replace").strip()
        bits, _, rest = text.partition(" ")
        digest, _, comment_and_type = rest.partition(" ")
        # Drop the comment (often root@<image build host>): only size, digest and type matter.
        key_kind = comment_and_type.rsplit(" ", 1)[-1] if comment_and_type else ""
        lines.append(" ".join(part for part in (bits, digest, key_kind) if part))
    return lines
