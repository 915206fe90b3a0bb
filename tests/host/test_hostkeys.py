"""SSH host keys: created with the real ssh-keygen in a temporary target root."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from azprov.config_values import parse_key_types
from azprov.errors import ConfigError, HostError
from azprov.host.hostkeys import default_key_types, ensure_host_keys, start_host_keys
from azprov.host.root import TargetRoot
from tests.distro_units import TRIXIE_SSHD_KEYGEN

FILE_CAP = 1 << 20  # what azprov reads of one sshd configuration file (sshd_config.FILE_CAP)

FINGERPRINT = re.compile(r"^\d+ SHA256:[A-Za-z0-9+/]+ \((RSA|ECDSA|ED25519)\)$")


def _key_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "etc/ssh").iterdir())


def test_empty_key_types_is_ssh_keygen_a_every_type_it_makes(tmp_path: Path) -> None:
    lines = ensure_host_keys(TargetRoot(tmp_path), "")
    names = _key_names(tmp_path)
    for kind in ("rsa", "ecdsa", "ed25519"):
        assert f"ssh_host_{kind}_key" in names
        assert f"ssh_host_{kind}_key.pub" in names
        private = tmp_path / f"etc/ssh/ssh_host_{kind}_key"
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert len(lines) == 3
    assert all(FINGERPRINT.match(line) for line in lines), lines


def test_only_the_configured_types_are_created(tmp_path: Path) -> None:
    lines = ensure_host_keys(TargetRoot(tmp_path), "ed25519, ecdsa")
    assert _key_names(tmp_path) == [
        "ssh_host_ecdsa_key",
        "ssh_host_ecdsa_key.pub",
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["(ECDSA)", "(ED25519)"]


def test_existing_keys_are_kept_and_only_fingerprinted(tmp_path: Path) -> None:
    ensure_host_keys(TargetRoot(tmp_path), "ed25519")
    key = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    before = key.read_bytes()
    lines = ensure_host_keys(TargetRoot(tmp_path), "")  # -A would add rsa and ecdsa
    assert key.read_bytes() == before
    assert _key_names(tmp_path) == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
    assert len(lines) == 1 and lines[0].endswith("(ED25519)")


def test_the_fingerprint_matches_the_key(tmp_path: Path) -> None:
    import base64
    import hashlib

    (line,) = ensure_host_keys(TargetRoot(tmp_path), "ed25519")
    blob = (tmp_path / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
    digest = base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode()
    assert line == f"256 SHA256:{digest.rstrip('=')} (ED25519)"


def test_nothing_is_written_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "image"
    root.mkdir()
    ensure_host_keys(TargetRoot(root), "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image"]
    assert sorted(p.name for p in root.iterdir()) == ["etc", "var"]
    # The keys were made in azprov's state dir, which keeps nothing once they are in place.
    work = root / "var/lib/azprov/hostkeys.tmp"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("text", ["dsa", "ed25519,foo", "rsa1"])
def test_an_unknown_type_is_a_config_error_naming_it(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="ssh_host_key_types") as caught:
        ensure_host_keys(TargetRoot(tmp_path), text)
    bad = next(t for t in text.split(",") if t not in ("rsa", "ecdsa", "ed25519"))
    assert repr(bad) in str(caught.value)
    assert not (tmp_path / "etc/ssh").exists() or not any((tmp_path / "etc/ssh").iterdir())


def test_key_type_lists_are_normalised() -> None:
    assert parse_key_types("") == []
    assert parse_key_types(" ED25519,rsa  ed25519 ") == ["ed25519", "rsa"]


@pytest.mark.parametrize(
    ("kind", "bits"), [("rsa", "2048"), ("ecdsa", "384"), ("ecdsa", "521"), ("ed25519", "")]
)
def test_fingerprints_match_what_ssh_keygen_prints(tmp_path: Path, kind: str, bits: str) -> None:
    """azprov computes the fingerprint itself (no process per key): it must read exactly
    as `ssh-keygen -l` does, less the comment."""
    import subprocess

    from azprov.host.hostkeys import fingerprints

    ssh_dir = tmp_path / "etc/ssh"
    ssh_dir.mkdir(parents=True)
    key = ssh_dir / f"ssh_host_{kind}_key"
    size = ["-b", bits] if bits else []
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, *size, "-N", "", "-C", "builder@host", "-f", str(key)],
        check=True,
    )
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert fingerprints(TargetRoot(tmp_path)) == [f"{printed[0]} {printed[1]} {printed[-1]}"]


# -- the default set, and the image's own generator -----------------------------------

# Fedora's and RHEL's sshd-keygen.target, as openssh-server ships it.
FEDORA_KEYGEN_TARGET = """\
[Unit]
Wants=sshd-keygen@rsa.service
Wants=sshd-keygen@ecdsa.service
Wants=sshd-keygen@ed25519.service
PartOf=sshd.service
"""


def fedora_like(root: Path) -> Path:
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "sshd-keygen.target").write_text(FEDORA_KEYGEN_TARGET)
    (units / "sshd-keygen@.service").write_text(
        "[Unit]\nDescription=OpenSSH %i Server Key Generation\n"
    )
    return root


def mask(root: Path, unit: str) -> None:
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / unit).symlink_to("/dev/null")


def test_unset_types_are_ed25519_and_ecdsa_and_made_so(tmp_path: Path) -> None:
    """A Debian-like image (no generator of its own): no RSA, the slow one."""
    assert default_key_types(TargetRoot(tmp_path)) == ["ed25519", "ecdsa"]
    lines = ensure_host_keys(TargetRoot(tmp_path), None)
    assert [n for n in _key_names(tmp_path) if n.endswith("_key")] == [
        "ssh_host_ecdsa_key",
        "ssh_host_ed25519_key",
    ]
    assert sorted(line.split()[-1] for line in lines) == ["(ECDSA)", "(ED25519)"]


def test_an_image_whose_sshd_makes_rsa_at_start_gets_rsa_from_azprov_instead(
    tmp_path: Path,
) -> None:
    """Fedora/RHEL: sshd-keygen@rsa.service would make it anyway, later, on sshd's path
    and without its fingerprint on the console."""
    assert default_key_types(TargetRoot(fedora_like(tmp_path))) == ["ed25519", "ecdsa", "rsa"]


@pytest.mark.parametrize(
    "masked", ["sshd-keygen@rsa.service", "sshd-keygen@.service", "sshd-keygen.target"]
)
def test_a_masked_generator_leaves_rsa_out(tmp_path: Path, masked: str) -> None:
    root = fedora_like(tmp_path)
    mask(root, masked)
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]


def test_a_generator_wanted_through_a_wants_link_counts_too(tmp_path: Path) -> None:
    wants = tmp_path / "etc/systemd/system/sshd-keygen.target.wants"
    wants.mkdir(parents=True)
    (wants / "sshd-keygen@rsa.service").symlink_to("/usr/lib/systemd/system/sshd-keygen@.service")
    assert default_key_types(TargetRoot(tmp_path)) == ["ed25519", "ecdsa", "rsa"]


def test_an_unknown_type_in_the_target_is_ignored(tmp_path: Path) -> None:
    root = fedora_like(tmp_path)
    target = root / "usr/lib/systemd/system/sshd-keygen.target"
    target.write_text(FEDORA_KEYGEN_TARGET.replace("rsa", "dsa"))
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]


EVERY_TYPE = ["ed25519", "ecdsa", "rsa"]


def trixie_like(root: Path, machine_id: str | None = "uninitialized\n") -> Path:
    """Debian 13's sshd-keygen.service installed and enabled (by the real systemctl, as
    the package's postinst does); `machine_id` None: no /etc/machine-id at all."""
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    (units / "sshd-keygen.service").write_text(TRIXIE_SSHD_KEYGEN)
    subprocess.run(
        ["systemctl", f"--root={root}", "--quiet", "enable", "sshd-keygen.service"],
        check=True,
        capture_output=True,
    )
    assert (root / "etc/systemd/system/ssh.service.wants/sshd-keygen.service").is_symlink()
    if machine_id is not None:
        (root / "etc/machine-id").write_text(machine_id)
    return root


@pytest.mark.parametrize("machine_id", ["uninitialized\n", None], ids=["uninitialized", "absent"])
def test_a_first_boot_image_whose_sshd_keygen_service_makes_every_type_gets_them_from_azprov(
    tmp_path: Path, machine_id: str | None
) -> None:
    """Debian 13: on a first boot sshd-keygen.service runs `ssh-keygen -A` before sshd.
    azprov makes those types itself (RSA included), each fingerprint logged, so the
    image's unit finds them all and makes none unseen."""
    root = trixie_like(tmp_path, machine_id)
    assert default_key_types(TargetRoot(root)) == EVERY_TYPE
    lines = ensure_host_keys(TargetRoot(root), None)
    assert sorted(line.split()[-1] for line in lines) == ["(ECDSA)", "(ED25519)", "(RSA)"]


def test_sshd_keygen_service_is_not_counted_when_the_boot_is_not_a_first_boot(
    tmp_path: Path,
) -> None:
    """An empty machine-id (what `azprov deprovision` leaves) or a real one: systemd
    skips the unit (ConditionFirstBoot=yes), so it would make nothing."""
    root = trixie_like(tmp_path, "")
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]
    (root / "etc/machine-id").write_text("5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]


def test_on_the_running_system_systemds_first_boot_mark_decides(tmp_path: Path) -> None:
    """At boot, systemd has already committed a new machine ID when azprov runs: what
    it decided at its start is /run/systemd/first-boot, which the condition reads."""
    root = trixie_like(tmp_path, "5f3c0a9e7d1b4c2a8e6f0d9c3b7a1e55\n")
    live = TargetRoot(root)
    live.live = True  # read as the running system's own root would be
    assert default_key_types(live) == ["ed25519", "ecdsa"]
    (root / "run/systemd").mkdir(parents=True)
    (root / "run/systemd/first-boot").write_text("")
    assert default_key_types(live) == EVERY_TYPE


@pytest.mark.parametrize("how", ["masked", "disabled"])
def test_a_masked_or_disabled_sshd_keygen_service_leaves_rsa_out(tmp_path: Path, how: str) -> None:
    root = trixie_like(tmp_path)
    if how == "masked":
        mask(root, "sshd-keygen.service")
    else:
        subprocess.run(
            ["systemctl", f"--root={root}", "--quiet", "disable", "sshd-keygen.service"],
            check=True,
            capture_output=True,
        )
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]


def test_an_sshd_keygen_service_that_runs_something_else_is_not_taken_for_ssh_keygen_a(
    tmp_path: Path,
) -> None:
    """Only `ssh-keygen -A` says which types it makes: every default one."""
    root = trixie_like(tmp_path)
    (root / "usr/lib/systemd/system/sshd-keygen.service").write_text(
        TRIXIE_SSHD_KEYGEN.replace("ssh-keygen -A", "/usr/local/sbin/make-keys ed25519")
    )
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]
    (root / "usr/lib/systemd/system/sshd-keygen.service").write_text(
        TRIXIE_SSHD_KEYGEN.replace("ssh-keygen -A", "-/usr/bin/ssh-keygen -A")
    )
    assert default_key_types(TargetRoot(root)) == EVERY_TYPE


def test_the_provisioning_unit_runs_before_every_key_generator_azprov_knows() -> None:
    """Ordered after it, an image's generator finds the keys azprov made and makes none;
    unordered, it runs early in boot (it needs no network) and azprov finds keys,
    makes none and logs no fingerprint."""
    import configparser

    from azprov.host.keygen_units import IMAGE_KEYGEN_UNITS

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(
        (Path(__file__).resolve().parents[2] / "units/azure-provisioning.service").read_text()
    )
    before = unit["Unit"]["Before"].split()
    assert "sshd-keygen.service" in IMAGE_KEYGEN_UNITS
    assert set(IMAGE_KEYGEN_UNITS) <= set(before), before


# Debian 12's sshd_config names the default keys only in comments; RHEL's names them.
DEBIAN_HOST_KEY_LINES = """\
#HostKey /etc/ssh/ssh_host_rsa_key
#HostKey /etc/ssh/ssh_host_ecdsa_key
#HostKey /etc/ssh/ssh_host_ed25519_key
"""
RHEL_HOST_KEY_LINES = DEBIAN_HOST_KEY_LINES.replace("#HostKey", "HostKey")


def sshd_config(root: Path, text: str, name: str = "sshd_config") -> Path:
    path = root / "etc/ssh" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"Include /etc/ssh/sshd_config.d/*.conf\n{text}UsePAM yes\n")
    return root


def test_host_keys_named_only_in_comments_change_nothing(tmp_path: Path) -> None:
    root = sshd_config(tmp_path, DEBIAN_HOST_KEY_LINES)
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]


def test_an_rsa_host_key_sshd_asks_for_by_name_is_made(tmp_path: Path) -> None:
    """Without it sshd logs an error at every start; with only it, sshd does not start."""
    root = sshd_config(tmp_path, RHEL_HOST_KEY_LINES)
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa", "rsa"]
    alone = sshd_config(tmp_path / "alone", "hostkey /etc/ssh/ssh_host_RSA_key\n")
    assert default_key_types(TargetRoot(alone)) == ["ed25519", "ecdsa", "rsa"]


def test_a_host_key_named_in_a_drop_in_counts(tmp_path: Path) -> None:
    root = sshd_config(tmp_path, "")
    drop_in = root / "etc/ssh/sshd_config.d/50-image.conf"
    drop_in.parent.mkdir()
    drop_in.write_text("HostKey /etc/ssh/ssh_host_rsa_key\n")
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa", "rsa"]


def test_a_quoted_host_key_path_is_read_as_sshd_reads_it(tmp_path: Path) -> None:
    """Finding 17: `HostKey "/etc/ssh/ssh_host_rsa_key"` was read with its quotes, so
    the RSA key sshd asks for was not made (and sshd logged its absence at every start)."""
    root = sshd_config(tmp_path, 'HostKey "/etc/ssh/ssh_host_rsa_key"\n')
    assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa", "rsa"]
    spaced = sshd_config(tmp_path / "spaced", 'HostKey "/etc/ssh/my key"\nHostKey=/etc/ssh/x\n')
    from azprov.host.sshd_config import read_sshd_config

    config = read_sshd_config(TargetRoot(spaced))
    assert config is not None
    assert [s.value for s in config.every("HostKey")] == ["/etc/ssh/my key", "/etc/ssh/x"]


def test_an_include_loop_gets_the_plain_default_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A drop-in that includes itself: sshd stops at 16 levels and refuses to start."""
    root = sshd_config(tmp_path, "")
    sshd_config(root, "HostKey /etc/ssh/ssh_host_rsa_key\n", "sshd_config.d/50-image.conf")
    with caplog.at_level("WARNING"):
        assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]
    assert "more than 16 files deep" in caplog.text


@pytest.mark.parametrize("escape", ["etc/systemd/system", "etc/ssh/sshd_config.d"])
def test_a_link_out_of_the_image_reads_what_lies_there_inside_the_image(
    tmp_path: Path, escape: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A link is resolved as the image's own sshd and systemd see it: an absolute
    target is a path inside the image. What lies at that path on the host is never read."""
    root = tmp_path / "image"
    link = root / escape
    link.parent.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    asks_for_rsa = {
        "50-host.conf": "HostKey /etc/ssh/ssh_host_rsa_key\n",
        "sshd-keygen@rsa.service": "",
    }
    for name, text in asks_for_rsa.items():
        (outside / name).write_text(text)
    link.symlink_to(outside)  # on the host, it would lead out of the image
    sshd_config(root, "")  # Debian's shape: its drop-ins are included, so read
    wants = root / "etc/systemd/system/sshd-keygen.target.wants"
    if escape == "etc/systemd/system":  # the .wants directory is then below the link
        wants = root / str(outside).lstrip("/") / "sshd-keygen.target.wants"
    with caplog.at_level("WARNING"):
        # Nothing at that path inside the image: the host's files must not count.
        assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]
        # The same path inside the image is what the image's sshd would read.
        inside = root / str(outside).lstrip("/")
        inside.mkdir(parents=True)
        (inside / "50-image.conf").write_text("HostKey /etc/ssh/ssh_host_rsa_key\n")
        wants.mkdir(parents=True, exist_ok=True)
        (wants / "sshd-keygen@rsa.service").write_text("")
        assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa", "rsa"]
    assert caplog.text == ""


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _over_the_cap(path: Path) -> None:
    path.write_bytes(b"#" * (FILE_CAP + 1))


@pytest.mark.parametrize("breaker", [_fifo, _over_the_cap], ids=["fifo", "over_the_cap"])
@pytest.mark.parametrize(
    "relative",
    ["etc/ssh/sshd_config.d/50-image.conf", "usr/lib/systemd/system/sshd-keygen.target"],
)
def test_an_image_setup_that_cannot_be_read_gets_the_plain_default(
    tmp_path: Path, relative: str, breaker, caplog: pytest.LogCaptureFixture
) -> None:
    """This runs before anything can be reported: it warns, never raises (nor hangs
    on a FIFO, nor reads a file past its cap)."""
    root = fedora_like(sshd_config(tmp_path, ""))
    (root / "etc/ssh/sshd_config.d").mkdir()
    (root / relative).unlink(missing_ok=True)
    breaker(root / relative)
    with caplog.at_level("WARNING"):
        assert default_key_types(TargetRoot(root)) == ["ed25519", "ecdsa"]
    assert "unreadable" in caplog.text and relative in caplog.text


# -- a run killed while it makes keys ----------------------------------------------------

_KILLED_RUN = """
import sys, time
from azprov.host.hostkeys import start_host_keys
from azprov.host.root import TargetRoot
from tests.distro_units import TRIXIE_SSHD_KEYGEN
pending = start_host_keys(TargetRoot(sys.argv[1]), "rsa,ed25519")
print("generating", flush=True)
time.sleep(120)
"""


def _private_keys(top: Path) -> list[Path]:
    return [
        p
        for p in top.rglob("*")
        if p.is_file() and not p.is_symlink() and b"PRIVATE KEY" in p.read_bytes()[:64]
    ]


def _private_keys_if_any(top: Path) -> list[Path]:
    """_private_keys of a tree another process may be removing meanwhile."""
    try:
        return _private_keys(top) if top.is_dir() else _private_keys_in_file(top)
    except FileNotFoundError:
        return []


def _private_keys_in_file(path: Path) -> list[Path]:
    if path.is_file() and not path.is_symlink() and b"PRIVATE KEY" in path.read_bytes()[:64]:
        return [path]
    return []


def test_a_run_killed_mid_generation_leaves_no_private_key_outside_the_root(
    tmp_path: Path,
) -> None:
    """Finding 15: a SIGKILL left `/tmp/azprov-hostkeys-*` holding private host keys
    on the host. Now they are made in the root's 0700 state dir, and the next run
    removes what a killed one left."""
    root = tmp_path / "image"
    root.mkdir()
    # The run gets a temporary directory of its own: /tmp is shared with whatever else
    # runs on the machine (an .rpm build makes /tmp/azprov-* too), so only a directory
    # nobody else writes to tells this run's leftovers from theirs.
    own_tmp = tmp_path / "tmp"
    own_tmp.mkdir()
    host_tmp = Path(tempfile.gettempdir())
    before = set(host_tmp.glob("azprov-*"))
    killed = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(own_tmp)},
        start_new_session=True,  # its ssh-keygen children share its process group
    )
    assert killed.stdout is not None
    assert killed.stdout.readline() == b"generating\n"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    _wait_for_group(killed.pid)  # the orphaned ssh-keygen processes finish their keys
    assert list(own_tmp.iterdir()) == []
    # A path written as /tmp in full ignores TMPDIR: what appeared there meanwhile is
    # this run's only if it holds a private key (another test's build holds none).
    appeared = set(host_tmp.glob("azprov-*")) - before
    assert [key for top in appeared for key in _private_keys_if_any(top)] == []
    work = root / "var/lib/azprov/hostkeys.tmp"
    left = _private_keys(tmp_path)
    assert left, "the killed run's keys should be in its directory, for the next run"
    assert all(work in key.parents for key in left), left
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(key.parent.stat().st_mode) == 0o700 for key in left)

    # The next run removes them first thing, whether or not it makes keys itself.
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("an image's own key\n")
    assert start_host_keys(TargetRoot(root), None) is None
    assert list(work.iterdir()) == []
    assert _private_keys(tmp_path) == []


def test_a_live_run_directory_is_not_taken_for_a_stale_one(tmp_path: Path) -> None:
    first = start_host_keys(TargetRoot(tmp_path), "ed25519")
    assert first is not None and first.workdir is not None
    second = start_host_keys(TargetRoot(tmp_path), "ed25519")
    assert second is not None
    assert (tmp_path / first.workdir.lstrip("/")).is_dir()  # held by the first: kept
    assert len(second.install()) == 1
    first.cancel()
    assert list((tmp_path / "var/lib/azprov/hostkeys.tmp").iterdir()) == []


def _wait_for_group(group: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError("ssh-keygen still running after a minute")


def test_an_unreadable_etc_ssh_is_reported_after_ready_not_before(tmp_path: Path) -> None:
    """start_host_keys runs before anything can be reported: it must not raise there."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ssh").symlink_to("ssh")  # a link loop
    pending = start_host_keys(TargetRoot(tmp_path), "ed25519")
    assert pending is not None
    with pytest.raises(HostError, match="/etc/ssh"):
        pending.install()
    assert list((tmp_path / "var/lib/azprov/hostkeys.tmp").iterdir()) == []
