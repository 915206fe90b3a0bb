"""`azprov extensions`: poll the goal state, bring handlers to the requested state, report.

One round: fetch the goal state; when the Certificates URL is new, install
the tenant certificates; when the incarnation or the ExtensionsConfig URL
changed (or a handler failed for a reason that may pass), apply the plugins
(one at a time, in dependency order), reusing what an earlier round or
process already did for a handler whose request did not change; then upload
the status document, every round, whether anything changed or not. vmSettings
(Fast Track) are polled beside the goal state; `sources` chooses between them.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from typing import Any, Callable, Optional

from azprov.config import Config
from azprov.errors import AzprovError, HostError, TransientFabricError
from azprov.extensions.artifacts import Artifacts
from azprov.extensions.certificates import install_certificates
from azprov.extensions.fast_track import FastTrack
from azprov.extensions.goal import ExtensionsGoal, Plugin
from azprov.extensions.handler import HandlerFolder
from azprov.extensions.lifecycle import Lifecycle
from azprov.extensions.memory import MEMORY_FILE, Memory, read_boot_id
from azprov.extensions.multi_config import spread
from azprov.extensions.ordering import blocked_reason, run_order
from azprov.extensions.outcome import Outcome
from azprov.extensions.redaction import Redactor
from azprov.extensions.round_result import RoundResult, own_status
from azprov.extensions.sources import SourcedGoal, choose, in_effect, new_goals, remember_goal
from azprov.extensions.status import aggregate_status, handler_status, handler_statuses
from azprov.extensions.upload import StatusUploads
from azprov.fabric.client import Fabric
from azprov.fabric.models import GoalState
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

CONFIG_MAX_BYTES = 4 * 1024 * 1024


class Runner:
    """Keeps what it handled (in memory and under the state directory) across rounds."""

    def __init__(self, root: TargetRoot, config: Config, fabric: Fabric) -> None:
        self.root = root
        self.config = config
        self.fabric = fabric
        self.memory = Memory.load(root)
        self.boot_id = read_boot_id(root)
        self.artifacts = Artifacts(fabric, fabric.wireserver.goal_state, self.memory.channels)
        self.goal: Optional[ExtensionsGoal] = None
        self.outcomes: dict[str, Outcome] = {}
        self.redactor = Redactor()
        self._seen_goal: Optional[tuple[str, Optional[str]]] = None
        self.uploads = StatusUploads(fabric, self.artifacts.refresh)
        self._save_error: Optional[str] = None
        self._certificates_missing: Optional[str] = None  # why, while tried again each round
        self.fast_track = FastTrack(fabric)
        self.current: Optional[SourcedGoal] = None  # the goal in effect, with its source

    def round(self) -> RoundResult:
        """One poll; FabricError if even the goal state cannot be had."""
        result = RoundResult()
        goal_state = self.fabric.wireserver.goal_state()
        self._install_certificates(goal_state, result)
        polled = self.fast_track.poll(goal_state, self.artifacts.refresh)
        goal_state = polled.goal_state or goal_state
        if polled.stopped:  # back to the ExtensionsConfig, unless it is older
            self._seen_goal = None
        seen = (goal_state.incarnation, goal_state.extensions_config_url)
        retry = any(o.retry for o in self.outcomes.values())
        if seen != self._seen_goal or polled.goal is not None or retry:
            goal_state = self._apply_goal(goal_state, polled.goal)
        result.agent_failures += self.fast_track.failures()
        self._save_memory(result)
        entries = self._entries()
        result.agent_failures += [
            f"{o.name}: {o.operation} failed: {o.failure_line}"
            for o in self.outcomes.values()
            if o.failure is not None
        ]
        for outcome, entry in entries:
            status, message = own_status(entry)
            if not outcome.failed and status in ("error", "warning"):
                result.extension_errors.append(f"{outcome.name}: {status}: {message[:300]}")
        if self.goal is not None and self.goal.status_blob_url:
            self._upload(goal_state, [entry for _, entry in entries], result)
        return result

    def _save_memory(self, result: RoundResult) -> None:
        """Save what was handled; when it cannot be, the round says so and goes on (the
        next process redoes the work, and each handler's mrseq keeps enable from running
        twice)."""
        try:
            self.memory.save(self.root)
        except (AzprovError, OSError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            failure = f"cannot save {MEMORY_FILE}: {why}"
            level = logging.DEBUG if failure == self._save_error else logging.ERROR
            log.log(level, "%s", failure)
            self._save_error = failure
            result.agent_failures.append(failure)
            return
        self._save_error = None

    def _install_certificates(self, goal_state: GoalState, result: RoundResult) -> None:
        url = goal_state.certificates_url
        if not url or url == self.memory.certificates_url:
            self._certificates_missing = None
            return
        ext = self.config.extensions
        try:
            install_certificates(self.root, self.fabric.wireserver, url, ext.lib_dir)
        except (TransientFabricError, HostError, OSError) as exc:
            # No answer yet, or a file that could not be written: both may pass.
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            level = logging.DEBUG if why == self._certificates_missing else logging.ERROR
            log.log(level, "certificates not installed (tried again next round): %s", why)
            result.agent_failures.append(f"certificates: {why}")
            self._certificates_missing = why
            return
        except AzprovError as exc:
            # A refusal (403, 404) or an unusable document will not improve at the same
            # URL: not asked again until the goal state names another.
            log.error("certificates not installed: %s", exc)
            result.agent_failures.append(f"certificates: {exc}")
        self.memory.certificates_url, self._certificates_missing = url, None

    def _apply_goal(self, goal_state: GoalState, fast: Optional[SourcedGoal] = None) -> GoalState:
        """Fetch the ExtensionsConfig when new (or tried again), choose between it and a new
        Fast Track goal state `fast` (`sources`), apply; returns the goal state now current."""
        incarnation, url = goal_state.incarnation, goal_state.extensions_config_url
        on_fast_track = fast is not None or (self.current is not None and self.current.fast_track)
        if url is None and not on_fast_track:
            log.info("incarnation %s has no ExtensionsConfig: nothing to run", incarnation)
            self._seen_goal, self.goal, self.outcomes = (incarnation, url), None, {}
            self.current = None
            return goal_state
        content = None
        if url is not None and ((incarnation, url) != self._seen_goal or not on_fast_track):
            content = self.fabric.wireserver.fetch_document(
                "ExtensionsConfig", url, max_bytes=CONFIG_MAX_BYTES
            )
        # Seen from here on: a malformed document is logged once, not every poll.
        self._seen_goal = (incarnation, url)
        try:
            candidates, self.fast_track.refused_config = new_goals(content, incarnation, fast)
            chosen = choose(self.current, candidates, in_effect(self.memory))
            return goal_state if chosen is None else self._apply_config(goal_state, chosen)
        except BaseException as exc:
            if not isinstance(exc, AzprovError):  # a crash did not apply it: try next round
                self._seen_goal = None
                self.fast_track.forget()
            raise

    def _apply_config(self, goal_state: GoalState, chosen: SourcedGoal) -> GoalState:
        url, goal = goal_state.extensions_config_url, chosen.goal
        if chosen.on_hold:  # held (the VM may yet be given away): status still goes up
            log.info("%s is on hold: its extensions wait", chosen.named)
            self.goal = self.goal or dataclasses.replace(goal, plugins=())
            return goal_state
        self.goal, self.current = goal, chosen
        self.redactor = Redactor(s for p in goal.plugins for s in p.protected)
        log.info(
            "%s: %d plugin(s): %s",
            chosen.named,
            len(goal.plugins),
            ", ".join(f"{p.name} {p.version} {p.state}" for p in goal.plugins) or "none",
        )
        self.artifacts.goal_state = goal_state
        self.outcomes = self._apply_plugins(goal, chosen.id)
        remember_goal(self.memory, url, chosen)
        return self.artifacts.goal_state or goal_state

    def _apply_plugins(self, goal: ExtensionsGoal, incarnation: str) -> dict[str, Outcome]:
        lifecycle = Lifecycle(
            self.root, self.config, self.artifacts, self.fabric.wireserver.host, self.redactor
        )
        outcomes: dict[str, Outcome] = {}
        missing = self._certificates_missing
        for plugin in run_order(goal.plugins):
            outcome = self.memory.outcome_for(incarnation, plugin, self.boot_id)
            if outcome is not None:
                log.debug("%s: already handled in incarnation %s", plugin.name, incarnation)
            elif (blocked := blocked_reason(plugin, goal, outcomes, missing)) is not None:
                log.warning("%s: %s", plugin.name, blocked.reason)
                version = plugin.version if plugin.invalid else lifecycle.version_shown(plugin)
                seq_no = plugin.seq_no or 0
                outcome = spread(
                    plugin,
                    Outcome(
                        plugin.name, version, seq_no, "Enable", blocked.reason, retry=blocked.retry
                    ),
                )
            else:
                standing = self.memory.standing_extensions(incarnation, plugin, self.boot_id)
                outcome = self._apply_plugin(lifecycle, plugin, standing)
            outcomes[plugin.name.lower()] = outcome
            self.memory.remember(incarnation, plugin, outcome, self.boot_id)
        return outcomes

    def _apply_plugin(
        self, lifecycle: Lifecycle, plugin: Plugin, standing: dict[str, Outcome]
    ) -> Outcome:
        """`lifecycle.apply`; a bug with one plugin is its own error, not a crashed round."""
        try:
            return lifecycle.apply(plugin, standing)
        except Exception as exc:
            why = self.redactor(f"{type(exc).__name__}: {exc}")
            log.error("%s: internal error while applying it: %s", plugin.name, why)
            log.debug("plugin failure", exc_info=exc)
            version = plugin.version if plugin.invalid else lifecycle.version_shown(plugin)
            failure = f"azprov internal error: {why}"
            return spread(
                plugin, Outcome(plugin.name, version, plugin.seq_no or 0, "Enable", failure)
            )

    def _entries(self) -> list[tuple[Outcome, dict[str, Any]]]:
        """(outcome, handlerAggregateStatus entry) for each handler to report, in goal order."""
        if self.goal is None:
            return []
        entries = []
        for plugin in self.goal.plugins:
            outcome = self.outcomes.get(plugin.name.lower())
            if outcome is None or not outcome.present:
                continue
            if outcome.version is None and outcome.failure is None:
                continue
            entries += self._entry(outcome)
        return entries

    def _entry(self, outcome: Outcome) -> list[tuple[Outcome, dict[str, Any]]]:
        """One handler's entries (one per named extension of a multi-config handler);
        whatever goes wrong building them is that handler's error."""
        ext = self.config.extensions
        try:
            folder = (
                HandlerFolder(self.root, ext.lib_dir, ext.log_dir, outcome.name, outcome.version)
                if outcome.version and (outcome.failure is None or outcome.multi_config)
                else None
            )
            return handler_statuses(self.root, outcome, folder)
        except Exception as exc:  # a bug with one handler must not silence the others
            log.error("%s: status not readable: %s: %s", outcome.name, type(exc).__name__, exc)
            log.debug("status failure", exc_info=exc)
            why = f"azprov could not read its status: {type(exc).__name__}: {exc}"
            failed = dataclasses.replace(outcome, failure=why, multi_config=False)
            return [(failed, handler_status(self.root, failed, None))]

    def _upload(
        self, goal_state: GoalState, entries: list[dict[str, Any]], result: RoundResult
    ) -> None:
        assert self.goal is not None and self.goal.status_blob_url is not None
        # Each string is redacted on its own, before serializing: a key cut short in one
        # handler's message is redacted to the end of that string, not of the document.
        document = aggregate_status(self.root, self.redactor.strings(entries))
        document = self.fast_track.status(document, self.current, goal_state.incarnation)
        self.uploads.upload(goal_state, self.goal, document, result.agent_failures)


def run_extensions(root: TargetRoot, config: Config, once: bool) -> int:
    """The `azprov extensions` command; returns the exit code (round_result.EXIT_*)."""
    from azprov.fabric.client import open_fabric
    from azprov.host.leases import wireserver_endpoint

    with open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path)) as fabric:
        if once:
            result = Runner(root, config, fabric).round()
            for line in result.agent_failures + result.extension_errors:
                log.error("%s", line)
            return result.exit_code
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        log.info("extensions: polling every %g s", config.extensions.poll_interval)
        poll(lambda: Runner(root, config, fabric), stop, config.extensions.poll_interval)
        log.info("extensions: stopping (SIGTERM)")
        return 0


def poll(make_runner: Callable[[], Runner], stop: threading.Event, interval: float) -> None:
    """Run rounds until `stop` is set. The runner is made inside the handling, so a
    failure while it starts is one failed round (tried again next round), never a
    service that fails at every start."""
    runner: Optional[Runner] = None
    while not stop.is_set():
        try:
            if runner is None:
                runner = make_runner()
            runner.round()
        except AzprovError as exc:
            log.error("extensions: round failed: %s", exc)
        except Exception as exc:  # a bug must not end the service: log it, poll again
            log.error("extensions: round failed: %s: %s", type(exc).__name__, exc)
            log.debug("round failure", exc_info=exc)
        stop.wait(interval)
