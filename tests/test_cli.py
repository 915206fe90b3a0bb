"""Command-line errors are one line on stderr with a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest

from tests.conftest import run_azprov


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--root", "/nonexistent-root", "status"), "'--root'"),
        (("bogus",), "No such command 'bogus'"),
        (
            ("--config", "{config}", "--root", "{root}", "report-failure"),
            "Missing argument 'TEXT'",
        ),
        (("--config", "/nonexistent.conf", "report-ready"), "'--config'"),
    ],
)
def test_usage_errors_are_one_line(args, expected, tmp_path):
    config = tmp_path / "closed.conf"  # a closed loopback port: nothing real is ever contacted
    config.write_text(
        "[wireserver]\nendpoint = 127.0.0.1:9\n[imds]\nurl = http://127.0.0.1:9/metadata\n"
    )
    args = tuple(a.format(config=config, root=tmp_path) for a in args)
    run = run_azprov(*args)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("azprov: error:") and expected in lines[0]


def test_bad_config_file_names_file_key_and_value(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text("[wireserver]\ntotal_timeout = soon\n")
    run = run_azprov("--config", str(config), "--root", str(tmp_path), "report-ready")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"azprov: error: {config}: [wireserver] total_timeout = 'soon': must be a positive number of seconds"
    )


def test_help_and_version_import_nothing_network_related():
    import subprocess
    import sys

    probe = (
        "import sys, runpy; sys.argv = ['azprov', '--help'];"
        "import azprov.cli as c\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('httpx', 'defusedxml', 'azprov.fabric.http') if m in sys.modules]\n"
        "print('LOADED', bad)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout


def test_status_on_an_unprovisioned_root(tmp_path):
    run = run_azprov("--root", str(tmp_path), "status")
    assert run.returncode == 0
    assert "Provisioned:  no" in run.stdout and "unknown" in run.stdout


def test_every_child_python_carries_the_real_azure_guard():
    """The guard is checked by inspection: trying a real connect would risk the packet."""
    import subprocess
    import sys

    probe = (
        "import socket; "
        "print(*(getattr(socket.socket, n).__module__ for n in ('connect', 'connect_ex', 'sendto', 'sendmsg')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["sitecustomize"] * 4
