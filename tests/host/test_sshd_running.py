"""Whether sshd may be running: decided from its pid file, so a first boot runs no systemctl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from azprov.host.root import TargetRoot
from azprov.host.sshd import SSHD_PID_FILE, sshd_may_be_running


def test_no_pid_file_means_not_running(tmp_path: Path) -> None:
    assert sshd_may_be_running(TargetRoot(tmp_path), "/run/sshd.pid") is False


def test_a_live_pid_means_running(tmp_path: Path) -> None:
    (tmp_path / "sshd.pid").write_text(f"{os.getpid()}\n")
    assert sshd_may_be_running(TargetRoot(tmp_path), "/sshd.pid") is True


def test_a_dead_pid_means_not_running(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    (tmp_path / "sshd.pid").write_text(f"{finished.pid}\n")
    assert sshd_may_be_running(TargetRoot(tmp_path), "/sshd.pid") is False


def test_an_unreadable_pid_file_falls_back_to_asking(tmp_path: Path) -> None:
    (tmp_path / "sshd.pid").write_text("not a pid\n")
    assert sshd_may_be_running(TargetRoot(tmp_path), "/sshd.pid") is True


def test_a_fifo_as_pid_file_is_asked_about_not_waited_on(tmp_path: Path) -> None:
    """Read through the door: a FIFO there would hang a plain open()."""
    os.mkfifo(tmp_path / "sshd.pid")
    assert sshd_may_be_running(TargetRoot(tmp_path), "/sshd.pid") is True


def test_the_pid_file_named_in_sshd_config_is_the_one_read(tmp_path: Path) -> None:
    from azprov.host.root import TargetRoot
    from azprov.host.sshd import SSHD_PID_FILE, _configured_pid_file

    config = tmp_path / "etc/ssh/sshd_config"
    config.parent.mkdir(parents=True)
    config.write_text("Port 22\n")
    assert _configured_pid_file(TargetRoot(tmp_path)) == SSHD_PID_FILE
    config.write_text("Port 22\npidfile = /run/other.pid\n")
    assert _configured_pid_file(TargetRoot(tmp_path)) == "/run/other.pid"
    config.write_text("PidFile none\n")
    assert _configured_pid_file(TargetRoot(tmp_path)) is None  # only systemctl can tell


# -- what the image's sshd configuration says: one reader for every keyword ---------


def write(root: Path, path: str, text: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


# Debian 12's and Fedora's sshd_config start by including the drop-ins.
INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf\n"


def test_a_pid_file_set_in_an_included_drop_in_wins_as_sshd_reads_it(tmp_path: Path) -> None:
    from azprov.host.sshd import _configured_pid_file

    write(tmp_path, "/etc/ssh/sshd_config", f"{INCLUDE}PidFile /run/later.pid\n")
    write(tmp_path, "/etc/ssh/sshd_config.d/50-image.conf", "PidFile=/run/image.pid\n")
    write(tmp_path, "/etc/ssh/sshd_config.d/README", "PidFile /run/not-a-conf.pid\n")
    assert _configured_pid_file(TargetRoot(tmp_path)) == "/run/image.pid"


def test_values_come_in_the_order_sshd_reads_them(tmp_path: Path) -> None:
    from azprov.host.sshd_config import read_sshd_config

    write(
        tmp_path,
        "/etc/ssh/sshd_config",
        f"HostKey /k/first\n{INCLUDE}#HostKey /k/commented\nhostkey = /k/last\n",
    )
    write(tmp_path, "/etc/ssh/sshd_config.d/20-b.conf", "HostKey /k/b\n")
    write(tmp_path, "/etc/ssh/sshd_config.d/10-a.conf", "  HostKey\t/k/a\n")
    config = read_sshd_config(TargetRoot(tmp_path))
    assert config is not None
    assert [s.value for s in config.every("HostKey")] == ["/k/first", "/k/a", "/k/b", "/k/last"]


def test_drop_ins_that_sshd_config_does_not_include_are_not_read(tmp_path: Path) -> None:
    from azprov.host.sshd import _configured_pid_file

    write(tmp_path, "/etc/ssh/sshd_config", "PidFile /run/own.pid\n")
    write(tmp_path, "/etc/ssh/sshd_config.d/50-image.conf", "PidFile /run/image.pid\n")
    assert _configured_pid_file(TargetRoot(tmp_path)) == "/run/own.pid"
    assert _configured_pid_file(TargetRoot(tmp_path / "no-such-root-file")) == SSHD_PID_FILE


def test_a_quoted_pid_file_with_a_space_is_read_whole(tmp_path: Path) -> None:
    from azprov.host.sshd import _configured_pid_file

    write(tmp_path, "/etc/ssh/sshd_config", 'PidFile "/run/my sshd.pid"\n')
    assert _configured_pid_file(TargetRoot(tmp_path)) == "/run/my sshd.pid"


def test_an_unreadable_configuration_means_the_default_pid_file(tmp_path: Path) -> None:
    write(tmp_path, "/etc/ssh/sshd_config", f"{INCLUDE}")
    os.makedirs(tmp_path / "etc/ssh/sshd_config.d", exist_ok=True)
    os.mkfifo(tmp_path / "etc/ssh/sshd_config.d/10-pipe.conf")
    from azprov.host.sshd import _configured_pid_file

    assert _configured_pid_file(TargetRoot(tmp_path)) == SSHD_PID_FILE
