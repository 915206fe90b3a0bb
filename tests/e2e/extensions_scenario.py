"""The goal states the host plays while the extensions VM runs, and what it keeps of them.

The HostGAPlugin serves vmSettings from the start, first as a host whose extensions
still come through the Fabric does (source `Fabric`, mirroring each ExtensionsConfig:
azprov must ignore them), so that a later Fast Track goal state is seen in the same
process (a 404 would switch vmSettings off until azprov starts again). Phases:
1. `first`: an access-like and a custom-script-like handler (ExtensionsConfig);
2. `seq_no`: new settings for the second one (a new incarnation), then `idle` rounds;
3. `uninstall`: the first one uninstalled;
4. `multi`: a RunCommand-v2-shaped multi-config handler with two named extensions,
   then `multi_removed`: one of them deleted while the other keeps running;
5. `fast`: the WireServer's ExtensionsConfig frozen where it is; a handler only
   vmSettings (source FastTrack) ask for, then `fast_change`: new settings for it
   through vmSettings alone, then `fast_idle` rounds answered 304.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from azprov.simulator import Answer, Request, SimulatedFabric
from tests.extensions.fast_track import freeze_extensions_config, publish_vm_settings
from tests.extensions.simulated import NamedSpec, PluginSpec, SimulatedExtensions

ACCESS = "E2e.AccessLike"
SCRIPT = "E2e.CustomScriptLike"
FAST = "E2e.FastTrackOnly"
RUN_COMMAND = "Microsoft.CPlat.Core.RunCommandHandlerLinux"
SCENARIO_TIMEOUT = 420.0
IDLE_ROUNDS = 3
# inSvdSeqNo of the ExtensionsConfig (the simulator's) and of the two Fast Track goals.
FAST_IN_SVD, FAST_CHANGE_IN_SVD = "2", "3"


def entries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Single-config handlers' status entries by handler name."""
    return {e["handlerName"]: e for e in document["aggregateStatus"]["handlerAggregateStatus"]}


def named_entries(document: dict[str, Any], handler: str = RUN_COMMAND) -> dict[str, Any]:
    """A multi-config handler's status entries by extension name."""
    return {
        e.get("runtimeSettingsStatus", {}).get("extensionName", ""): e
        for e in document["aggregateStatus"]["handlerAggregateStatus"]
        if e["handlerName"] == handler
    }


def own(entry: dict[str, Any]) -> dict[str, Any]:
    return entry.get("runtimeSettingsStatus", {}).get("settingsStatus", {}).get("status", {})


def _ready(entry: Optional[dict[str, Any]], seq_no: int) -> bool:
    return (
        entry is not None
        and entry["status"] == "Ready"
        and entry["runtimeSettingsStatus"]["sequenceNumber"] == seq_no
        and own(entry).get("status") == "success"
    )


def succeeded(document: dict[str, Any], name: str, seq_no: int) -> bool:
    return _ready(entries(document).get(name), seq_no)


def named_succeeded(document: dict[str, Any], extension: str, seq_no: int) -> bool:
    return _ready(named_entries(document).get(extension), seq_no)


def features(document: dict[str, Any]) -> list[str]:
    return [f["Key"] for f in document.get("supportedFeatures", [])]


def goal_status(document: dict[str, Any]) -> dict[str, Any]:
    artifacts = document["aggregateStatus"].get("vmArtifactsAggregateStatus", {})
    status: dict[str, Any] = artifacts.get("goalStateAggregateStatus", {})
    return status


def _fast_track_goal(document: dict[str, Any], in_svd: str) -> bool:
    goal = goal_status(document)
    return (
        "FastTrack" in features(document)
        and goal.get("inSvdSeqNo") == in_svd
        and goal.get("status") == "Success"
    )


def run_command_settings(extension: str, seq_no: int) -> dict[str, Any]:
    return {"enable": {"files": {f"/etc/e2e-run-command-{extension}": f"{extension} {seq_no}\n"}}}


def fast_settings(seq_no: int) -> dict[str, Any]:
    return {"enable": {"files": {"/etc/e2e-fast-track": f"seq {seq_no}\n"}}}


@dataclasses.dataclass
class Scenario:
    """Drives the goal states from the host while the guest runs, and keeps the evidence."""

    fabric: SimulatedFabric
    ext: SimulatedExtensions
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    error: Optional[str] = None
    marks: dict[str, float] = dataclasses.field(default_factory=dict)  # status showed it
    changed: dict[str, float] = dataclasses.field(default_factory=dict)  # the host asked
    documents: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    idle_requests: list[str] = dataclasses.field(default_factory=list)
    fast_idle: list[Request] = dataclasses.field(default_factory=list)
    fast_idle_window: tuple[float, float] = (0.0, 0.0)
    incarnations: dict[str, int] = dataclasses.field(default_factory=dict)
    frozen_config: bytes = b""  # the ExtensionsConfig the WireServer serves from `fast` on

    def start(self) -> None:
        self.fabric.wireserver.route(
            "GET", "/e2e/extensions-done", lambda r: Answer(200 if self.done.is_set() else 404)
        )
        self.mirror()
        threading.Thread(target=self._run, daemon=True).start()

    def mirror(self) -> None:
        """vmSettings as a host serves them while the Fabric delivers the extensions."""
        publish_vm_settings(self.ext, source="Fabric", in_svd_seq_no=self.ext.in_svd_seq_no)

    def _wait(self, name: str, check: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        seen = 0
        while time.monotonic() < deadline:
            log = list(self.ext.status_log)
            for when, document in log[seen:]:
                if check(document):
                    self.marks[name], self.documents[name] = when, document
                    return
            seen = len(log)
            time.sleep(0.2)
        raise TimeoutError(f"no status upload showed {name} within {SCENARIO_TIMEOUT:g} s")

    def _new_goal(self, name: str) -> None:
        self.changed[name] = time.monotonic()
        self.incarnations[name] = self.fabric.new_incarnation()
        self.mirror()

    def _fast_goal(self, name: str, in_svd: str) -> None:
        self.changed[name] = time.monotonic()
        publish_vm_settings(self.ext, in_svd_seq_no=int(in_svd))

    def _idle(self) -> tuple[list[Request], tuple[float, float]]:
        """IDLE_ROUNDS more status uploads with nothing new: the requests meanwhile."""
        requests, uploads, began = len(self.fabric.requests), len(self.ext.status_log), 0.0
        began = time.monotonic()
        deadline = began + SCENARIO_TIMEOUT
        while len(self.ext.status_log) < uploads + IDLE_ROUNDS:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {IDLE_ROUNDS} status uploads while idle")
            time.sleep(0.2)
        return list(self.fabric.requests[requests:]), (began, time.monotonic())

    def _run(self) -> None:
        try:
            self._extensions_config_phases()
            self._multi_config_phases()
            self._fast_track_phases()
        except Exception as exc:  # reported by the test, with the boot's records
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def _extensions_config_phases(self) -> None:
        self.incarnations["first"] = self.fabric.spec.incarnation
        self._wait("first", lambda d: succeeded(d, ACCESS, 0) and succeeded(d, SCRIPT, 0))
        script = self.ext.plugins[1]
        script.seq_no = 1
        script.public_settings = {"enable": {"files": {"/etc/e2e-custom-script": "seq 1\n"}}}
        self._new_goal("seq_no")
        self._wait("seq_no", lambda d: succeeded(d, SCRIPT, 1))
        idle, _ = self._idle()
        self.idle_requests = [f"{r.service} {r.method} {r.path} {r.status}" for r in idle]
        self.ext.plugins[0].state = "uninstall"
        self._new_goal("uninstall")
        self._wait("uninstall", lambda d: ACCESS not in entries(d) and succeeded(d, SCRIPT, 1))

    def _multi_config_phases(self) -> None:
        first = NamedSpec("first", 1, public_settings=run_command_settings("first", 1))
        second = NamedSpec("second", 4, public_settings=run_command_settings("second", 4))
        self.ext.plugins.append(PluginSpec(RUN_COMMAND, "1.3", named=[first, second]))
        self._new_goal("multi")
        self._wait(
            "multi", lambda d: named_succeeded(d, "first", 1) and named_succeeded(d, "second", 4)
        )
        self.ext.plugins[-1].named = [second]  # "first" is deleted
        self._new_goal("multi_removed")
        self._wait(
            "multi_removed",
            lambda d: (
                set(named_entries(d)) == {"second"}
                and named_succeeded(d, "second", 4)
                and succeeded(d, SCRIPT, 1)
            ),
        )

    def _fast_track_phases(self) -> None:
        # From here the WireServer's goal state stays where it is: only vmSettings move.
        self.frozen_config = freeze_extensions_config(self.ext)
        self.ext.plugins = [p for p in self.ext.plugins if p.name != ACCESS]
        self.ext.plugins.append(
            PluginSpec(FAST, "1.0", seq_no=0, public_settings=fast_settings(0))
        )
        self._fast_goal("fast", FAST_IN_SVD)
        self._wait(
            "fast",
            lambda d: (
                succeeded(d, FAST, 0)
                and _fast_track_goal(d, FAST_IN_SVD)
                and succeeded(d, SCRIPT, 1)
                and named_succeeded(d, "second", 4)
            ),
        )
        fast = self.ext.plugins[-1]
        fast.seq_no, fast.public_settings = 1, fast_settings(1)
        self._fast_goal("fast_change", FAST_CHANGE_IN_SVD)
        self._wait(
            "fast_change",
            lambda d: succeeded(d, FAST, 1) and _fast_track_goal(d, FAST_CHANGE_IN_SVD),
        )
        self.fast_idle, self.fast_idle_window = self._idle()

    def config_fetched(self, name: str) -> float:
        """When the guest fetched the ExtensionsConfig of the goal state `name`."""
        query = f"incarnation={self.incarnations[name]}"
        return min(
            r.at
            for r in self.fabric.requests
            if "type=extensionsConfig" in r.path and query in r.path
        )

    def vm_settings_fetched(self, name: str) -> float:
        """When the guest first had the whole vmSettings document published for `name`."""
        return min(
            r.at
            for r in self.fabric.requests_to("hostplugin", "/vmSettings")
            if r.status == 200 and r.at >= self.changed[name]
        )

    def artifact_bytes(self, requests: list[Request]) -> int:
        """Bytes of manifest or package these requests could have carried (either channel)."""
        total = 0
        for r in requests:
            if r.service == "storage":
                total += len(self.ext.blobs.get(r.route, b""))
            elif r.service == "hostplugin" and r.route == "/extensionArtifact":
                location = r.headers.get("x-ms-artifact-location", "")
                total += len(self.ext.blobs.get(urlsplit(location).path, b""))
        return total
