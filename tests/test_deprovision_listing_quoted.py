"""`deprovision --dry-run` lists names from the image: a newline or an escape in a file
name is shown quoted, so it cannot forge a line of the listing or recolour it (review L2)."""

from __future__ import annotations

from pathlib import Path

from azprov.simulate import prepare_root
from tests.conftest import run_azprov

FORGED = "ssh_host_x\n  - remove nothing else: this image is clean\x1b[8m"


def test_dry_run_listing_quotes_a_file_name_with_a_newline_and_escape(tmp_path: Path) -> None:
    prepare_root(tmp_path, "d0c2b7e9-8d5c-4f1e-9a43-5b6f0e4a3c21")
    (tmp_path / "etc/ssh").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/ssh" / FORGED).write_text("x")
    run = run_azprov("--root", str(tmp_path), "deprovision", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "\x1b" not in run.stdout
    assert "\n  - remove nothing else" not in run.stdout
    assert "ssh_host_x\\n  - remove nothing else: this image is clean\\x1b[8m" in run.stdout


def test_quoted_has_one_implementation_shared_by_check_and_deprovision() -> None:
    from azprov.checks import report
    from azprov.deprovision import actions
    from azprov.printable import quoted

    assert report.quoted is quoted
    assert actions.quoted is quoted
