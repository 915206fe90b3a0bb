"""Whether sshd may be running: decided from its pid file, so a first boot runs no systemctl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from azprov.host.sshd import sshd_may_be_running


def test_no_pid_file_means_not_running(tmp_path: Path) -> None:
    assert sshd_may_be_running(str(tmp_path / "sshd.pid")) is False


def test_a_live_pid_means_running(tmp_path: Path) -> None:
    (tmp_path / "sshd.pid").write_text(f"{os.getpid()}\n")
    assert sshd_may_be_running(str(tmp_path / "sshd.pid")) is True


def test_a_dead_pid_means_not_running(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    (tmp_path / "sshd.pid").write_text(f"{finished.pid}\n")
    assert sshd_may_be_running(str(tmp_path / "sshd.pid")) is False


def test_an_unreadable_pid_file_falls_back_to_asking(tmp_path: Path) -> None:
    (tmp_path / "sshd.pid").write_text("not a pid\n")
    assert sshd_may_be_running(str(tmp_path / "sshd.pid")) is True


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
