"""`azprov report-ready` / `report-failure` as real processes against the simulated fabric.

Exit codes, a single `azprov: error:` line on stderr and never a traceback,
proxies in the environment ignored, and budgets kept.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azprov.errors import DOCUMENTATION_URL
from azprov.simulator import Answer, Request, SimulatedFabric
from tests.conftest import REPO, Run, run_azprov
from tests.fabric.test_wireserver import BILLION_LAUGHS
from tests.netfaults import PROXY_VARIABLES, ConnectionRecorder

# Python start-up plus azprov's imports, on a loaded CI machine.
STARTUP_SLACK = 2.0


def error_lines(run: Run) -> list[str]:
    """The stderr lines that report the failure; everything else is log."""
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert all(line.startswith("azprov: ") for line in lines), run.stderr
    return [line for line in lines if line.startswith("azprov: error:")]


def report_ready(config: Path, root: Path, *more: str, env: dict[str, str] | None = None) -> Run:
    return run_azprov("--config", str(config), "--root", str(root), *more, "report-ready", env=env)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- success ------------------------------------------------------------------------------


def test_report_ready_exits_0_and_posts_ready(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    run = report_ready(config_file, tmp_path)
    assert run.returncode == 0, run.stderr
    assert error_lines(run) == []
    assert run.stdout == ""
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "1")]
    assert [r.method for r in fabric.requests_to("wireserver")] == ["GET", "POST"]
    assert fabric.requests_to("imds") == [] and fabric.requests_to("hostplugin") == []


def test_report_ready_follows_a_410_to_the_new_incarnation(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    # The first POST moves the goal state on (and is told so); later ones are served
    # by the simulator's own health handler.
    posts: list[Request] = []

    def first_post_moves_on(request: Request) -> Answer:
        posts.append(request)
        if len(posts) == 1:
            fabric.new_incarnation()
            return Answer(410, b"<Error><Code>GoalStateIncarnationStale</Code></Error>")
        return fabric._health(request)

    fabric.wireserver.route("POST", "/machine?comp=health", first_post_moves_on)
    fabric.wireserver.script([Answer(503, headers={"Retry-After": "0"})], "/machine/")
    run = report_ready(config_file, tmp_path)
    assert run.returncode == 0, run.stderr
    assert [(r.method, r.status) for r in fabric.requests_to("wireserver")] == [
        ("GET", 503),
        ("GET", 200),
        ("POST", 410),
        ("GET", 200),
        ("POST", 200),
    ]
    assert [(r.state, r.incarnation) for r in fabric.health_reports] == [("Ready", "2")]


def test_report_failure_posts_not_ready_with_the_report_line(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    text = "sshd_config broken|line 3\nsee journal"
    run = run_azprov("--config", str(config_file), "--root", str(tmp_path), "report-failure", text)
    assert run.returncode == 0, run.stderr
    (report,) = fabric.health_reports
    assert (report.state, report.substatus) == ("NotReady", "ProvisioningFailed")
    assert report.description is not None
    assert report.description.startswith(
        "result=error|reason=sshd_config broken/line 3 see journal|"
    )
    assert report.description.endswith(f"|documentation_url={DOCUMENTATION_URL}")
    assert "|vm_id=unknown|" in report.description  # no DMI under this root


# -- proxies ------------------------------------------------------------------------------------


def test_proxies_in_the_environment_are_ignored(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    proxy = ConnectionRecorder()
    try:
        env = {name: proxy.url for name in PROXY_VARIABLES}
        env["NO_PROXY"] = env["no_proxy"] = ""
        run = report_ready(config_file, tmp_path, env=env)
        assert run.returncode == 0, run.stderr
        time.sleep(0.1)
        assert proxy.received == [], "azprov connected to the proxy"
        assert [r.method for r in fabric.requests_to("wireserver")] == ["GET", "POST"]
        for request in fabric.requests_to("wireserver"):
            assert "via" not in request.headers and "x-forwarded-for" not in request.headers
        # Control: the same environment does send a proxy-honouring client there.
        subprocess.run(
            [sys.executable, "-c", f"import httpx; httpx.get('{fabric.wireserver.base}/')"],
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert len(proxy.received) == 1
    finally:
        proxy.close()


# -- failures: one line, the right exit code, no traceback ---------------------------------------


def test_bad_config_exits_2_with_one_line_naming_file_key_value(
    fabric: SimulatedFabric, tmp_path: Path
) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(
        fabric.config_text().replace("[imds]", "total_timeout = soon\n[imds]"), encoding="utf-8"
    )
    run = report_ready(config, tmp_path)
    assert run.returncode == 2
    assert error_lines(run) == [
        f"azprov: error: {config}: [wireserver] total_timeout = 'soon': must be a positive number of seconds"
    ]
    assert fabric.requests == []


def test_bad_config_in_the_root_is_found(fabric: SimulatedFabric, tmp_path: Path) -> None:
    main = tmp_path / "etc/azprov/azprov.conf"
    main.parent.mkdir(parents=True)
    # A usable endpoint on loopback too: were the typo ignored, nothing leaves the machine.
    main.write_text(
        f"[wireserver]\nendpoint = 127.0.0.1:{closed_port()}\ntotal_timeout = 1\n"
        "endpont = 127.0.0.1\n",
        encoding="utf-8",
    )
    run = run_azprov("--root", str(tmp_path), "report-ready")
    assert run.returncode == 2
    (line,) = error_lines(run)
    assert line.startswith(f"azprov: error: {main}: unknown key 'endpont' in [wireserver]")


def test_unreachable_fabric_with_a_short_budget(tmp_path: Path) -> None:
    port = closed_port()
    config = tmp_path / "azprov.conf"
    config.write_text(
        f"[wireserver]\nendpoint = 127.0.0.1:{port}\ntotal_timeout = 1.5\n", encoding="utf-8"
    )
    run = report_ready(config, tmp_path)
    assert run.returncode == 1
    (line,) = error_lines(run)
    assert line.startswith(
        f"azprov: error: goal state: no usable answer from http://127.0.0.1:{port}/machine/"
        "?comp=goalstate within 1.5 s ("
    )
    assert " attempts); last: " in line and "refused" in line.lower()
    assert run.stderr.splitlines()[-1] == line
    assert run.seconds < 1.5 + STARTUP_SLACK


def test_hostile_goal_state_is_refused_at_once(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    fabric.wireserver.script([Answer(200, BILLION_LAUGHS)] * 5, "/machine/")
    run = report_ready(config_file, tmp_path)
    assert run.returncode == 1
    assert error_lines(run) == ["azprov: error: goal state: refused, it carries a DTD"]
    assert len(fabric.requests_to("wireserver")) == 1
    assert fabric.health_reports == []
    assert run.seconds < 1.0 + STARTUP_SLACK


def test_4xx_from_the_wireserver_fails_fast(
    fabric: SimulatedFabric, config_file: Path, tmp_path: Path
) -> None:
    fabric.wireserver.script([Answer(403, b"<Error>Forbidden</Error>")], "/machine/")
    run = report_ready(config_file, tmp_path)
    assert run.returncode == 1
    (line,) = error_lines(run)
    assert "HTTP 403" in line and "<Error>Forbidden</Error>" in line
    assert len(fabric.requests_to("wireserver")) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--root", "/nonexistent/azprov-root"), "'--root'"),
        (("--config", "/nonexistent/azprov.conf"), "'--config'"),
        (("--no-such-option",), "--no-such-option"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], expected: str) -> None:
    run = run_azprov(*args, "report-ready")
    assert run.returncode == 2
    (line,) = error_lines(run)
    assert expected in line
    assert run.stderr.count("\n") == 1


def test_missing_argument_is_one_line() -> None:
    run = run_azprov("report-failure")
    assert run.returncode == 2
    (line,) = error_lines(run)
    assert "TEXT" in line


# -- what a command imports ------------------------------------------------------------------


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("report-ready", "--help")])
def test_version_and_help_import_nothing_network_related(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "azprov", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    for module in ("httpx", "httpcore", "defusedxml", "xml.etree.ElementTree", "azprov.fabric"):
        assert module not in imported, f"{' '.join(args)} imports {module}"
