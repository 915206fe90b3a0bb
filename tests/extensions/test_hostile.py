"""Hostile input to the extension runner: crafted packages, a handler's own files,
azprov's state file, one bad plugin in the goal.

Each fails alone, as that item's own error in the uploaded status, and no link a
package or a handler plants can steer azprov outside the handler folder.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import stat
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from azprov.config import load_config
from azprov.extensions import memory as memory_module
from azprov.extensions.memory import MEMORY_FILE
from azprov.extensions.round_result import EXIT_AGENT_FAILED, EXIT_EXTENSION_ERROR
from azprov.extensions.runner import run_extensions
from azprov.host.root import TargetRoot
from tests.conftest import start_azprov
from tests.extensions.conftest import Agent, handler_entries
from tests.extensions.fleet import extension_zip
from tests.extensions.simulated import PluginSpec, SimulatedExtensions

NAME = "Sim.TestExtension"
OTHER = "Sim.OtherExtension"


def _settings_status(document: dict[str, Any], name: str) -> dict[str, Any]:
    entry = handler_entries(document)[name]
    status: dict[str, Any] = entry["runtimeSettingsStatus"]["settingsStatus"]["status"]
    return status


def _files_below(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _publish_two(ext: SimulatedExtensions, bad: dict[str, Any], **spec: Any) -> None:
    """NAME with the public settings `bad` (its own misbehaviour), and OTHER, well behaved."""
    ext.publish_test_extension(NAME, "1.0.0", **spec)
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1, public_settings=bad),
        PluginSpec(OTHER, "1.0", seq_no=1),
    ]


def _other_is_fine(ext: SimulatedExtensions) -> None:
    entry = handler_entries(ext.status_document())[OTHER]
    assert entry["status"] == "Ready"
    assert _settings_status(ext.status_document(), OTHER)["status"] == "success"


# -- 4. writing outside the handler folder ---------------------------------------------------


def _with_links(package: bytes, links: dict[str, str]) -> bytes:
    buffer = io.BytesIO(package)
    with zipfile.ZipFile(buffer, "a") as archive:
        for member, target in links.items():
            info = zipfile.ZipInfo(member)
            info.create_system = 3  # Unix: the mode bits below are read
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def test_a_package_link_that_leaves_through_a_self_link_is_refused_and_nothing_lands_outside(
    ext: SimulatedExtensions, agent: Agent, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = agent.lib(f"{NAME}-1.0.0")
    # `s -> .` makes `s/s/…/s` the handler folder itself, so the `..` after it climb
    # from there: lexically `s/../` cancels out and the path looks like it stays inside.
    hops = len(folder.parts)
    climb = "s/" * hops + "../" * hops + str(outside).lstrip("/")
    package = _with_links(extension_zip(NAME, "1.0.0"), {"s": ".", "config": climb})
    ext.publish(NAME, "1.0.0", package)
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1), PluginSpec(OTHER, "1.0", seq_no=1)]

    code = agent.once()

    assert _files_below(outside) == []
    assert code == EXIT_AGENT_FAILED
    assert agent.ops(NAME) == []
    assert not folder.exists()
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    assert "is a symbolic link" in entry["formattedMessage"]["message"]
    _other_is_fine(ext)


@pytest.mark.parametrize("planted", ["config", "status"])
def test_a_link_a_handler_plants_in_its_folder_never_steers_azprov(
    ext: SimulatedExtensions, agent: Agent, fabric: Any, tmp_path: Path, planted: str
) -> None:
    _publish_two(ext, {})
    assert agent.once() == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "2.status").write_text(
        '[{"status": {"status": "success", "formattedMessage": {"message": "from outside"}}}]'
    )
    folder = agent.lib(f"{NAME}-1.0.0")
    shutil.rmtree(folder / planted)  # what a buggy handler running as root might do
    (folder / planted).symlink_to(outside)
    for plugin in ext.plugins:
        plugin.seq_no = 2
    fabric.new_incarnation()

    agent.once()

    assert _files_below(outside) == ["2.status"]
    entry = handler_entries(ext.status_document())[NAME]
    shown = json.dumps(entry)
    assert "from outside" not in shown
    assert f"/{planted} is a symbolic link" in shown
    _other_is_fine(ext)


# -- 5. a handler's status and heartbeat files --------------------------------------------------

_SUCCESS = '[{"status": {"status": "success", "code": %s}}]'


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        ("[" * 50_000, "error", "1.status is malformed: nested deeper than"),
        ('[{"status": ' * 10_000, "error", "1.status is malformed: nested deeper than"),
        (_SUCCESS % '"\u00b2"', "success", ""),  # str.isdigit() says yes, int() says no
        (_SUCCESS % f'"{"9" * 5000}"', "error", "status.code is a string of 5000 characters"),
        (_SUCCESS % ("9" * 5000), "error", "1.status is malformed: a number of 5000 digits"),
        (_SUCCESS % "1e999", "error", "1.status is malformed: a number out of range"),
        (_SUCCESS % "NaN", "error", "1.status is malformed: NaN is not a JSON number"),
    ],
)
def test_a_hostile_status_file_is_that_handlers_own_error_and_the_others_still_report(
    ext: SimulatedExtensions, agent: Agent, raw: str, status: str, message: str
) -> None:
    _publish_two(ext, {"enable": {"raw_status": raw}})

    code = agent.once()

    assert code == (EXIT_EXTENSION_ERROR if status == "error" else 0)
    own = _settings_status(ext.status_document(), NAME)
    assert own["status"] == status
    assert message in own["formattedMessage"]["message"]
    if status == "success":
        assert own["code"] == "\u00b2"  # passed on as written, as the platform agent does
    _other_is_fine(ext)
    json.dumps(ext.status_document(), allow_nan=False)  # the upload stays strict JSON


def test_a_directory_in_place_of_a_status_file_is_an_error_round_after_round(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    _publish_two(ext, {})
    assert agent.once() == 0
    status_file = agent.lib(f"{NAME}-1.0.0", "status", "1.status")
    status_file.unlink()
    status_file.mkdir()

    with agent.runner() as runner:
        results = [runner.round(), runner.round()]

    assert [r.exit_code for r in results] == [EXIT_EXTENSION_ERROR] * 2
    own = _settings_status(ext.status_document(), NAME)
    assert own["status"] == "error"
    assert own["formattedMessage"]["message"] == (
        "status/1.status cannot be read: /status/1.status is a directory, not a regular file"
    )
    _other_is_fine(ext)
    assert len(ext.status_uploads) == 3


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda beat: beat.write_text("[" * 10_000), "heartbeat.log is malformed: nested deeper"),
        (
            lambda beat: beat.write_text('[{"heartbeat": {"status": "Ready", "code": 1e999}}]'),
            "heartbeat.log is malformed: a number out of range",
        ),
        (
            lambda beat: (beat.unlink(), beat.mkdir()),
            "heartbeat.log cannot be read: /heartbeat.log is a directory, not a regular file",
        ),
    ],
)
def test_a_hostile_heartbeat_is_that_handlers_own_not_ready(
    ext: SimulatedExtensions, agent: Agent, damage: Callable[[Path], Any], message: str
) -> None:
    _publish_two(ext, {"enable": {"heartbeat": "Ready"}}, reportHeartbeat="true")
    assert agent.once() == 0
    damage(agent.lib(f"{NAME}-1.0.0", "heartbeat.log"))

    assert agent.once() == 0

    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    assert entry["formattedMessage"]["message"].startswith(message)
    _other_is_fine(ext)


# -- 6. azprov's own state file ---------------------------------------------------------------


def _damage_memory(root: Path, how: str) -> Path:
    memory = root / MEMORY_FILE.lstrip("/")
    if how == "directory":
        memory.unlink()
        (memory / "inside").mkdir(parents=True)
    elif how == "deep":
        memory.write_text('{"version": 1, "plugins": ' + "[" * 100_000)
    else:
        memory.write_text(how)
    return memory


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("deep", "nested deeper than"),
        ("directory", "is a directory, not a regular file"),
        ('{"version": 1, "incarnation": {"a": 1}}', "incarnation is an object, not a string"),
        ('{"version": 1, "channels": [[]]}', "channels is an array, not an array of names"),
        ('{"version": 1, "in_svd_seq_no": ' + "9" * 5000 + "}", "a number of 5000 digits"),
    ],
)
def test_an_unusable_state_file_is_a_warning_and_a_fresh_start(
    ext: SimulatedExtensions, agent: Agent, caplog: pytest.LogCaptureFixture, how: str, why: str
) -> None:
    _publish_two(ext, {})
    assert agent.once() == 0
    _damage_memory(agent.root, how)
    uploads = len(ext.status_uploads)

    code = agent.once()

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"{MEMORY_FILE} is unusable" in w and why in w and "starting afresh" in w for w in warnings
    ), warnings
    assert len(ext.status_uploads) == uploads + 1
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"
    _other_is_fine(ext)
    # Afresh: the handlers are looked at again, but their mrseq keeps enable from running twice.
    assert [o["op"] for o in agent.ops(NAME)] == ["install", "enable"]
    if how == "directory":  # nowhere to save it: said, not hidden
        assert code == EXIT_AGENT_FAILED
        assert f"cannot save {MEMORY_FILE}" in caplog.text
    else:
        assert code == 0


def test_the_service_keeps_polling_over_an_unusable_state_file(
    ext: SimulatedExtensions, ext_config: Path, target: Path
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    memory = target / MEMORY_FILE.lstrip("/")
    memory.mkdir(parents=True)
    process = start_azprov(
        "--config",
        str(ext_config),
        "--root",
        str(target),
        "extensions",
        "--run-handlers-on-this-host",
    )
    try:
        deadline = time.monotonic() + 20
        while len(ext.status_uploads) < 3 and process.poll() is None:
            assert time.monotonic() < deadline, "no status uploads"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"


@pytest.fixture
def sigterm_later() -> Iterator[Callable[[Callable[[], bool]], None]]:
    """Send this process SIGTERM once `ready()` says so (or after 20 s), as systemd would
    stop the loop; the test's own handler stands in until the loop installs its own."""
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    timers: list[threading.Thread] = []
    done = threading.Event()

    def arm(ready: Callable[[], bool]) -> None:
        def wait() -> None:
            deadline = time.monotonic() + 20
            while not ready() and time.monotonic() < deadline and not done.is_set():
                time.sleep(0.05)
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

        timers.append(threading.Thread(target=wait, daemon=True))
        timers[-1].start()

    try:
        yield arm
    finally:
        done.set()
        for timer in timers:
            timer.join()
        signal.signal(signal.SIGTERM, previous)


def test_a_bug_while_the_runner_starts_is_one_failed_round_not_a_crash(
    ext: SimulatedExtensions,
    agent: Agent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sigterm_later: Callable[[Callable[[], bool]], None],
) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1)]
    load = memory_module.Memory.load
    calls: list[int] = []

    def broken_once(root: TargetRoot) -> memory_module.Memory:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in loading")
        return load(root)

    monkeypatch.setattr(memory_module.Memory, "load", staticmethod(broken_once))
    sigterm_later(lambda: len(ext.status_uploads) >= 2)

    code = run_extensions(
        TargetRoot(agent.root), load_config(agent.root, agent.config), once=False
    )

    assert code == 0
    assert "round failed: RuntimeError: a bug in loading" in caplog.text
    assert len(ext.status_uploads) >= 2
    assert handler_entries(ext.status_document())[NAME]["status"] == "Ready"


# -- 7. one bad plugin in the goal ------------------------------------------------------------


def _attribute(name: str, attribute: str, value: str) -> Callable[[str], str]:
    """Rewrite one attribute of `name`'s <Plugin> in <Plugins> (the one with a location)."""

    def rewrite(document: str) -> str:
        start = document.index(f'<Plugin name="{name}" version=')
        end = document.index(">", start)
        element = document[start:end]
        key = f' {attribute}="'
        at = element.index(key) + len(key)
        changed = element[:at] + value + element[element.index('"', at) :]
        return document[:start] + changed + document[end:]

    return rewrite


def _settings_attribute(name: str, replace: str, by: str) -> Callable[[str], str]:
    """Rewrite `replace` by `by` in `name`'s <PluginSettings> entry."""

    def rewrite(document: str) -> str:
        start = document.index("<PluginSettings>")
        start = document.index(f'<Plugin name="{name}"', start)
        end = document.index("</Plugin>", start)
        return document[:start] + document[start:end].replace(replace, by, 1) + document[end:]

    return rewrite


THUMB = "protectedSettingsCertThumbprint"
BAD_PLUGINS: dict[str, tuple[dict[str, Any], Callable[[str], str] | None, str]] = {
    "settings not JSON": (
        {"raw_settings": '{"runtimeSettings": [{"handlerSettings": {"protectedSettings": "S3'},
        None,
        "RuntimeSettings=<redacted> is invalid: not JSON",
    ),
    "settings nested too deep": (
        {"raw_settings": "[" * 100_000},
        None,
        "RuntimeSettings=<redacted> is invalid: nested deeper than",
    ),
    "settings of the wrong shape": (
        {"raw_settings": '{"runtimeSettings": {"handlerSettings": {}}}'},
        None,
        "RuntimeSettings=<redacted> is invalid: no runtimeSettings list",
    ),
    "a thumbprint that is not one": (
        {
            "raw_settings": json.dumps(
                {"runtimeSettings": [{"handlerSettings": {"protectedSettings": "S3", THUMB: "x"}}]}
            )
        },
        None,
        f"{THUMB}='x' is invalid: not a SHA-1 thumbprint",
    ),
    "a version that is not one": (
        {},
        _attribute(NAME, "version", "latest"),
        f"Plugin {NAME} @version='latest' is invalid",
    ),
    "an unknown state": (
        {},
        _attribute(NAME, "state", "paused"),
        f"Plugin {NAME} @state='paused' is invalid",
    ),
    "a location that is not http": (
        {},
        _attribute(NAME, "location", "file:///etc/shadow"),
        "manifest location='file:///etc/shadow' is invalid",
    ),
    "a seqNo that is not a number": (
        {},
        _settings_attribute(NAME, 'seqNo="1"', 'seqNo="\u00b2"'),
        "RuntimeSettings@seqNo='\u00b2' is invalid: not a whole number",
    ),
    "a seqNo of 5000 digits": (
        {},
        _settings_attribute(NAME, 'seqNo="1"', f'seqNo="{"9" * 5000}"'),
        "RuntimeSettings@seqNo='99999",
    ),
    "a dependency level that is not a number": (
        {"dependency_level": 1},
        _settings_attribute(NAME, 'dependencyLevel="1"', 'dependencyLevel="\u00b2"'),
        "DependsOn@dependencyLevel='\u00b2' is invalid",
    ),
}


@pytest.mark.parametrize("fault", list(BAD_PLUGINS))
def test_one_bad_plugin_fails_alone_and_the_others_run(
    ext: SimulatedExtensions, agent: Agent, fault: str
) -> None:
    spec, rewrite, message = BAD_PLUGINS[fault]
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [PluginSpec(NAME, "1.0", seq_no=1, **spec), PluginSpec(OTHER, "1.0", seq_no=1)]
    ext.rewrite_config = rewrite

    assert agent.once() == EXIT_AGENT_FAILED

    assert agent.ops(NAME) == []
    assert not agent.lib(f"{NAME}-1.0.0").exists()
    assert [o["op"] for o in agent.ops(OTHER)] == ["install", "enable"]
    _other_is_fine(ext)
    entry = handler_entries(ext.status_document())[NAME]
    assert entry["status"] == "NotReady"
    own = entry["runtimeSettingsStatus"]["settingsStatus"]["status"]
    assert own["status"] == "error"
    assert message in own["formattedMessage"]["message"]
    assert "S3" not in json.dumps(ext.status_document())


def test_a_plugin_with_a_name_that_could_climb_fails_alone(
    ext: SimulatedExtensions, agent: Agent
) -> None:
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [PluginSpec("a/../b", "1.0", seq_no=1), PluginSpec(OTHER, "1.0", seq_no=1)]

    assert agent.once() == EXIT_AGENT_FAILED

    assert sorted(p.name for p in agent.lib().iterdir() if "b" in p.name.lower()) == []
    _other_is_fine(ext)
    entry = handler_entries(ext.status_document())["a/../b"]
    assert entry["status"] == "NotReady"
    assert "Plugin@name='a/../b' is invalid: not a Publisher.Type name" in json.dumps(entry)


def test_a_plugin_listed_twice_fails_alone(ext: SimulatedExtensions, agent: Agent) -> None:
    ext.publish_test_extension(NAME, "1.0.0")
    ext.publish_test_extension(OTHER, "1.0.0")
    ext.plugins = [
        PluginSpec(NAME, "1.0", seq_no=1),
        PluginSpec(NAME.upper(), "1.0", seq_no=1),
        PluginSpec(OTHER, "1.0", seq_no=1),
    ]

    assert agent.once() == EXIT_AGENT_FAILED

    assert agent.ops(NAME) == []
    _other_is_fine(ext)
    message = handler_entries(ext.status_document())[NAME]["formattedMessage"]["message"]
    assert "is invalid: listed 2 times in Plugins, differently" in message
