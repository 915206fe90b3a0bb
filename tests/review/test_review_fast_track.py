"""Review of Fast Track (vmSettings) as a crafted HostGAPlugin answer would meet it."""

from __future__ import annotations

import json
import socket
import threading
from typing import Iterator

import pytest

from azprov.errors import AzprovError, InvalidInput
from azprov.extensions.fast_track import goal_status
from azprov.extensions.vmsettings import parse_vm_settings
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import FabricHttp
from azprov.fabric.models import GoalState

HANDLER = "Microsoft.CPlat.Core.RunCommandHandlerLinux"


@pytest.fixture
def latin1_etag_server() -> Iterator[int]:
    """Answers GET /vmSettings with a 200 whose ETag is printable but not ASCII."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    body = b"{}"
    reply = b"HTTP/1.1 200 OK\r\nETag: \xe9tag\r\nContent-Length: 2\r\n\r\n" + body

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()


def test_an_etag_that_could_not_be_sent_back_is_refused_when_it_arrives(
    latin1_etag_server: int,
) -> None:
    # 'étag' is printable, so it was kept; sent back as If-None-Match it is refused
    # before it leaves (not ASCII), so every later poll failed and no newer Fast Track
    # goal state was ever seen until azprov restarted.
    with FabricHttp() as http:
        plugin = HostPlugin(http, f"http://127.0.0.1:{latin1_etag_server}", 5.0)
        with pytest.raises(InvalidInput, match="ETag"):
            plugin.fetch_vm_settings(GoalState("1", "c", "i"), None, "correlation")


def _document(name: str, version: str, extension: str) -> bytes:
    return json.dumps(
        {
            "extensionGoalStatesSource": "FastTrack",
            "extensionsLastModifiedTickCount": 5,
            "extensionGoalStates": [
                {
                    "name": name,
                    "version": version,
                    "location": "https://example.invalid/manifest.xml",
                    "state": "enabled",
                    "isMultiConfig": True,
                    "settings": [{"extensionName": extension, "seqNo": 0, "publicSettings": "{}"}],
                }
            ],
        }
    ).encode()


@pytest.mark.parametrize(
    ("name", "version", "extension"),
    [
        (f"{HANDLER}\n", "1.0", "run1"),
        (HANDLER, "1.0\n", "run1"),
        (HANDLER, "1.0", "run1\n"),
    ],
)
def test_a_name_or_version_with_a_trailing_newline_makes_the_plugin_invalid(
    name: str, version: str, extension: str
) -> None:
    # Each becomes part of a file name (<lib>/<name>-<version>, config/<ext>.0.settings),
    # the handler's environment (ConfigExtensionName) and log lines; "X\n" is also
    # another handler than "X", installed beside it.
    try:
        sourced = parse_vm_settings(_document(name, version, extension), "etag1")
    except AzprovError:
        return
    (plugin,) = sourced.goal.plugins
    assert plugin.invalid is not None


def test_the_goal_states_status_names_a_bounded_number_of_unsupported_features() -> None:
    # 4 MiB of vmSettings can list ~20,000 feature names of 200 characters: the goal
    # state's status message quoted them all, in every status upload of every round.
    names = [{"name": f"{n:05d}" + "F" * 195} for n in range(20_000)]
    document = json.dumps(
        {
            "extensionGoalStatesSource": "FastTrack",
            "requiredFeatures": names,
            "extensionGoalStates": [],
        }
    ).encode()
    sourced = parse_vm_settings(document, "etag1")
    status = goal_status(sourced, "1")
    message = status["formattedMessage"]["message"]
    assert status["status"] == "Failed"
    assert len(message) <= 3200
    assert "00000" in message and "19999" not in message
    assert "20000" in message  # how many there are, not a silent cut
