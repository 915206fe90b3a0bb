"""SSH host keys: create them on a generalized image before sshd first starts.

`azprov deprovision` removes the host keys, so every VM made from the image
gets its own. On first boot `provision` creates them again (the distro's
sshd would refuse to start without any) and logs their fingerprints, which
the serial console (Azure boot diagnostics) shows, so a user can check the
key offered on their first SSH connection.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from typing import Optional

from azprov.config_values import KNOWN_TYPES, parse_key_types
from azprov.errors import HostError
from azprov.host.fingerprints import SSH_DIR, existing_host_keys, fingerprints
from azprov.host.hostkey_workdir import (
    make_run_directory,
    move_keys,
    remove_stale_runs,
    remove_tree,
)
from azprov.host.keygen_units import image_keygen_types
from azprov.host.root import TargetRoot
from azprov.host.sshd_config import read_sshd_config, sshd_path

log = logging.getLogger(__name__)

# Present only while a new key set is being installed (see _move_into_root); beside
# the keys, so it goes wherever they go (and an image with its own /etc/ssh gets no
# other directory for it).
INCOMPLETE = f"{SSH_DIR}/.azprov-host-keys-incomplete"


# The types a generalized image gets unless configured. RSA is left out: OpenSSH 8.8
# and later (Debian 12 ships 9.2) refuse the SHA-1 "ssh-rsa" signature by default, so
# only a client with the SHA-2 RSA signatures (OpenSSH 7.2 and later) can use an RSA
# host key, and those clients also take ECDSA (OpenSSH 5.7) and Ed25519 (6.5). RSA-3072
# generation is the one slow step on the way to sshd: 0.4-2.9 s of CPU on this
# project's build machine, 2-34 s under emulation, at random.
DEFAULT_TYPES = ("ed25519", "ecdsa")


_HOST_KEY_PATH = re.compile(r"/etc/ssh/ssh_host_(\w+)_key")


def default_key_types(root: TargetRoot) -> list[str]:
    """ed25519 and ecdsa, and any other type the image's sshd asks for by name
    (`HostKey /etc/ssh/ssh_host_rsa_key`: without it sshd complains, or with it
    alone does not start) or that the image makes itself before sshd starts when
    missing (Fedora/RHEL: sshd-keygen@rsa.service; Debian 13, on a first boot:
    sshd-keygen.service, every type) — made there anyway, only with no fingerprint
    on the console. Masking sshd-keygen@rsa.service (or sshd-keygen.service) leaves
    RSA out.

    Never raises: this runs before anything can be reported, so an image whose
    setup cannot be read gets the plain default and a warning.
    """
    types = list(DEFAULT_TYPES)
    try:
        extra = _configured_types(root) + image_keygen_types(root)
    except (HostError, OSError) as exc:
        log.warning("SSH host key types: the image's sshd setup is unreadable (%s)", exc)
        return types
    for kind in extra:
        if kind not in types:
            types.append(kind)
    return types


def _configured_types(root: TargetRoot) -> list[str]:
    """The standard host key types the image's sshd configuration names in HostKey."""
    config = read_sshd_config(root)
    paths = [sshd_path(setting.args[0]) for setting in config.every("HostKey")] if config else []
    found = [_HOST_KEY_PATH.fullmatch(re.sub("/+", "/", path)) for path in paths]
    return [m.group(1).lower() for m in found if m and m.group(1).lower() in KNOWN_TYPES]


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
    """Start making host keys in the background if the image has none (else None).

    Runs before anything can be reported: an /etc/ssh that cannot be read counts as
    one without keys, and the install (after Ready) reports what is wrong with it.
    """
    wanted = parse_key_types(key_types) if key_types is not None else None
    remove_stale_runs(root)
    try:
        if existing_host_keys(root) and root.lstat(INCOMPLETE) is None:
            return None
    except HostError as exc:
        log.warning("cannot tell whether the image has SSH host keys: %s", exc)
    return PendingHostKeys(root, default_key_types(root) if wanted is None else wanted)


class PendingHostKeys:
    """Host keys being made in a private directory, reaching /etc/ssh only on `install()`.

    Key generation is CPU-bound (RSA takes seconds on a small or emulated VM),
    so provisioning starts it first thing and lets it run beside everything
    else; if provisioning then fails, `cancel()` leaves the image unchanged.
    The directory is in the target root's state dir (see `hostkey_workdir`):
    a run killed before `cancel()` leaves the keys there, for the next run to
    remove, and nowhere else.
    """

    def __init__(self, root: TargetRoot, key_types: list[str]) -> None:
        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        self.workdir: Optional[str] = None  # in the tree: /var/lib/azprov/hostkeys.tmp/run-…
        self.made: Optional[str] = None  # where in it ssh-keygen writes the keys
        self._held = contextlib.ExitStack()  # the directory's lock
        # A failure to start (no ssh-keygen, a state dir that cannot be made) is raised
        # by install(), after Ready: Ready does not depend on host keys, and this runs
        # before anything can report.
        self.start_error: Optional[HostError] = None
        try:
            self.workdir = make_run_directory(root, self._held)
            self._start(self.workdir, key_types)
        except OSError as exc:
            self.start_error = HostError(
                f"creating SSH host keys: {exc.strerror or exc}", path=str(self.workdir)
            )
        except HostError as exc:
            self.start_error = exc

    def _start(self, workdir: str, key_types: list[str]) -> None:
        # -N "" : host keys have no passphrase; sshd must read them unattended.
        # Without types, -A -f DIR writes every default type below DIR/etc/ssh.
        # The paths name a directory made just now through the door, with no link on
        # the way, in the root's 0700 state dir.
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
                str(self.root.host_path(f"{workdir}/ssh_host_{kind}_key")),
            ]
            for kind in key_types
        ]
        self.made = workdir
        if not commands:
            self.made = f"{workdir}{SSH_DIR}"
            with self.root.directory(self.made, mode=0o700):
                pass
            commands = [["ssh-keygen", "-A", "-f", str(self.root.host_path(workdir))]]
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
        what was moved; a power loss leaves INCOMPLETE, which makes the next boot
        generate the whole set again."""
        assert self.made is not None  # set whenever there is no start_error
        self.root.write(INCOMPLETE, b"", mode=0o600)
        move_keys(self.root, self.made, SSH_DIR)
        self.root.remove(INCOMPLETE)

    def cancel(self) -> None:
        """Stop any key generation still running and remove the private directory."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        try:
            if self.workdir is not None:
                remove_tree(self.root, self.workdir)
        except (HostError, OSError) as exc:  # the next run removes it
            log.warning("cannot remove %s: %s", self.workdir, exc)
        finally:
            self._held.close()
