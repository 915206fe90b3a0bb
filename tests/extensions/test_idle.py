"""An unchanged goal state costs nothing, in the same process or a new one; storage that
cannot be reached costs one short try; exit codes tell scripts what went wrong."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from azprov.extensions.memory import MEMORY_FILE
from azprov.extensions.round_result import EXIT_AGENT_FAILED, EXIT_EXTENSION_ERROR
from azprov.simulator import Answer, SimulatedFabric
from tests.conftest import run_azprov
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions, publish_sample_and_access

NAME = "Idle.Sample"
OTHER = "Idle.Access"


def _downloads(fabric: SimulatedFabric) -> list[str]:
    """Every request for a manifest, a package or the certificates, on any channel."""
    return [
        f"{r.service} {r.path}"
        for r in fabric.requests
        if r.service == "storage"
        or r.path.startswith("/extensionArtifact")
        or "comp=certificates" in r.path
    ]


def _publish_two(ext: SimulatedExtensions) -> None:
    publish_sample_and_access(ext, NAME, OTHER, "S3cret-Idle", access_seq_no=7)


def test_an_unchanged_goal_state_downloads_and_runs_nothing_in_a_new_process(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    fabric.spec.certificates = True
    _publish_two(ext)
    assert agent.once() == 0
    downloads, ops = len(_downloads(fabric)), agent.ops(NAME) + agent.ops(OTHER)
    memory = agent.root / MEMORY_FILE.lstrip("/")
    assert memory.stat().st_mode & 0o777 == 0o600
    assert "S3cret-Idle" not in memory.read_text()

    for _ in range(2):  # each a new process, as from a timer
        assert agent.once() == 0
    assert len(_downloads(fabric)) == downloads
    assert agent.ops(NAME) + agent.ops(OTHER) == ops
    assert len(ext.status_uploads) == 3  # status is uploaded every round
    assert _settings(ext, NAME)["status"] == "success"

    # A new seqNo for one handler: only that one runs again.
    ext.plugins[1].seq_no = 8
    fabric.new_incarnation()
    assert agent.once() == 0
    assert [o["op"] + o["seq"] for o in agent.ops(OTHER)] == ["enable7", "enable8"]
    assert [o["op"] for o in agent.ops(NAME)] == ["install", "enable"]


def test_the_same_process_idles_without_fetching_the_extensions_config(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    _publish_two(ext)
    with agent.runner() as runner:
        assert runner.round().exit_code == 0
        configs = len(fabric.requests_to("wireserver", "/machine/"))
        downloads = len(_downloads(fabric))
        for _ in range(3):
            assert runner.round().exit_code == 0
    assert len(_downloads(fabric)) == downloads
    # Each idle round: the goal state only (plus the status upload).
    assert len(fabric.requests_to("wireserver", "/machine/")) == configs + 3


def _settings(ext: SimulatedExtensions, name: str) -> dict:
    entry = handler_entries(ext.status_document())[name]
    return entry["runtimeSettingsStatus"]["settingsStatus"]["status"]


@contextlib.contextmanager
def _black_hole() -> Iterator[str]:
    """A loopback address whose connections hang: its listener's accept queue is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the queue; later SYNs are dropped, connect() hangs
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for s in [*fillers, listener]:
            s.close()


def test_unreachable_storage_costs_one_short_try_and_is_remembered(
    ext: SimulatedExtensions,
    agent: Agent,
    fabric: SimulatedFabric,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    _publish_two(ext)
    with _black_hole() as base:
        ext.storage_base = base
        ext.publish(NAME, "1.0.0", extension_zip(NAME, "1.0.0", style="sample"))
        ext.publish(OTHER, "1.5.0", extension_zip(OTHER, "1.5.0", style="access"))
        started = time.monotonic()
        assert agent.once("storage_connect_timeout = 1\n") == 0
        first = time.monotonic() - started
        assert caplog.text.count("not from storage") == 1, caplog.text
        assert "timed out" in caplog.text
        saved = json.loads((agent.root / MEMORY_FILE.lstrip("/")).read_text())
        assert saved["channels"] == ["HostGAPlugin", "storage"]

        # A new goal state in a new process: the HostGAPlugin first, storage never tried.
        caplog.clear()
        ext.plugins[0].seq_no = 2
        ext.publish(NAME, "1.0.1", extension_zip(NAME, "1.0.1", style="sample"))
        fabric.new_incarnation()
        assert agent.once() == 0
        assert "not from storage" not in caplog.text
    assert first < 10, f"the first round took {first:.1f} s"
    assert [o["op"] + o["version"] for o in agent.ops(NAME)][-1] == "enable1.0.1"


def test_a_404_on_the_certificates_is_not_asked_again_but_a_503_is(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    fabric.spec.certificates = True
    machine = f"/machine/{fabric.spec.container_id}/{fabric.spec.role_name}?comp=certificates"
    fabric.wireserver.script([Answer(404, b"<Error>gone</Error>")], machine)
    with agent.runner() as runner:
        assert runner.round().exit_code == EXIT_AGENT_FAILED
        assert runner.round().exit_code == 0
        assert runner.round().exit_code == 0
    assert len([r for r in fabric.requests if "comp=certificates" in r.path]) == 1

    fabric.new_incarnation()
    fabric.wireserver.script([Answer(503, b"busy")] * 100, machine)
    with agent.runner() as runner:
        runner.fabric.wireserver.total_timeout = 0.5
        assert runner.round().exit_code == EXIT_AGENT_FAILED
        asked = len([r for r in fabric.requests if "comp=certificates" in r.path])
        assert runner.round().exit_code == EXIT_AGENT_FAILED
        assert len([r for r in fabric.requests if "comp=certificates" in r.path]) > asked


def test_exit_codes_and_one_stderr_line_per_extension(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish(NAME, "1.0.0", extension_zip(NAME, "1.0.0", style="sample"))
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings={"enable": {"status": "error"}})
    ]
    args = (
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--once",
        "--run-handlers-on-this-host",
    )
    run = run_azprov(*args)
    assert run.returncode == EXIT_EXTENSION_ERROR, run.stderr
    assert f"azprov: {NAME}: error: enable done for seqNo 1\n" in run.stderr

    ext.plugins[0].seq_no = 2
    ext.plugins[0].public_settings = {"enable": {"exit": 4, "stderr": "disk full"}}
    ext.fabric.new_incarnation()
    run = run_azprov(*args)
    assert run.returncode == EXIT_AGENT_FAILED, run.stderr
    assert f"azprov: {NAME}: Enable failed: enable failed with exit code 4\n" in run.stderr

    ext.plugins[0].seq_no = 3
    ext.plugins[0].public_settings = {}
    ext.fabric.new_incarnation()
    assert run_azprov(*args).returncode == 0
    assert run_azprov(*args).returncode == 0  # and again, idle


def test_help_documents_the_exit_codes() -> None:
    run = run_azprov("extensions", "--help")
    assert run.returncode == 0
    for code in ("0", "1", "3"):
        assert f"{code} " in run.stdout


def test_a_404_from_the_hostplugin_is_final_even_when_storage_only_timed_out(
    ext: SimulatedExtensions, agent: Agent, fabric: SimulatedFabric
) -> None:
    """The common setup: storage unreachable (a timeout, transient) and the HostGAPlugin
    answering 404 (the blob is not there). The 404 is the answer: the handler is not
    fetched again every round."""
    _publish_two(ext)
    with _black_hole() as base:
        ext.storage_base = base
        ext.publish(NAME, "1.0.0", extension_zip(NAME, "1.0.0", style="sample"))
        ext.publish(OTHER, "1.5.0", extension_zip(OTHER, "1.5.0", style="access"))
        fabric.hostplugin.script([Answer(404, b"BlobNotFound")] * 50, "/extensionArtifact")
        with agent.runner() as runner:
            runner.fabric.storage.policy = runner.fabric.storage.policy._replace(
                connect_timeout=0.3
            )
            assert runner.round().exit_code == EXIT_AGENT_FAILED
            asked = len(_downloads(fabric))
            runner.round()
            assert len(_downloads(fabric)) == asked


@pytest.mark.parametrize(
    "damage",
    [
        lambda plugins: plugins.update({next(iter(plugins)): "garbage"}),
        lambda plugins: next(iter(plugins.values()))["outcome"].update(failure=5),
        lambda plugins: next(iter(plugins.values()))["outcome"].update(seq_no=True),
        lambda plugins: next(iter(plugins.values())).update(request="x"),
    ],
)
def test_a_damaged_memory_file_is_forgotten_not_fatal(
    ext: SimulatedExtensions, agent: Agent, damage: Any
) -> None:
    _publish_two(ext)
    assert agent.once() == 0
    memory = agent.root / MEMORY_FILE.lstrip("/")
    saved = json.loads(memory.read_text())
    damage(saved["plugins"])
    memory.write_text(json.dumps(saved))
    assert agent.once() == 0  # the damaged entry is dropped and its handler looked at again
    assert json.loads(memory.read_text())["plugins"].keys() == {NAME.lower(), OTHER.lower()}
