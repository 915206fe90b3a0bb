"""`azprov extensions`: poll the goal state, bring handlers to the requested state, report.

One round: fetch the goal state; when the Certificates URL changed, install
the tenant certificates; when the incarnation or the ExtensionsConfig URL
changed, apply every plugin (one at a time, in dependency order); then upload
the status document, every round, whether anything changed or not.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Optional

from azprov.config import Config
from azprov.errors import AzprovError, TransientFabricError
from azprov.extensions.artifacts import Artifacts
from azprov.extensions.certificates import install_certificates
from azprov.extensions.goal import ExtensionsGoal, Plugin, parse_extensions_config
from azprov.extensions.handler import HandlerFolder
from azprov.extensions.lifecycle import Lifecycle, Outcome
from azprov.extensions.redaction import Redactor
from azprov.extensions.status import aggregate_status, handler_status
from azprov.extensions.upload import upload_status
from azprov.fabric.hostplugin import HostPlugin
from azprov.fabric.http import FabricHttp
from azprov.fabric.models import GoalState
from azprov.fabric.wireserver import WireServer
from azprov.host.root import TargetRoot

log = logging.getLogger(__name__)

CONFIG_MAX_BYTES = 4 * 1024 * 1024


def _order(plugins: tuple[Plugin, ...]) -> list[Plugin]:
    """Removals first (dependents before what they depend on), then enables, lowest level first."""
    return sorted(
        plugins,
        key=lambda p: (
            (1, p.dependency_level) if p.state == "enabled" else (0, -p.dependency_level)
        ),
    )


class Runner:
    def __init__(
        self, root: TargetRoot, config: Config, http: FabricHttp, wireserver: WireServer
    ) -> None:
        self.root = root
        self.config = config
        self.http = http
        self.wireserver = wireserver
        self.hostplugin = HostPlugin(
            http, wireserver.hostplugin_base, config.extensions.channel_timeout
        )
        self.goal: Optional[ExtensionsGoal] = None
        self.outcomes: dict[str, Outcome] = {}
        self.redactor = Redactor()
        self._seen_goal: Optional[tuple[str, Optional[str]]] = None
        self._seen_certificates: Optional[str] = None
        self._upload_error: Optional[str] = None

    def round(self) -> int:
        """One poll; returns how many handlers (or the upload) failed in it."""
        goal_state = self.wireserver.goal_state()
        failures = 0
        if goal_state.certificates_url and goal_state.certificates_url != self._seen_certificates:
            try:
                install_certificates(
                    self.root,
                    self.wireserver,
                    goal_state.certificates_url,
                    self.config.extensions.lib_dir,
                )
                self._seen_certificates = goal_state.certificates_url
            except AzprovError as exc:
                log.error("certificates not installed: %s", exc)
                failures += 1
                # Try again next round only if the fabric did not answer; a
                # document we cannot use will not improve at the same URL.
                if not isinstance(exc, TransientFabricError):
                    self._seen_certificates = goal_state.certificates_url
        seen = (goal_state.incarnation, goal_state.extensions_config_url)
        if seen != self._seen_goal:
            goal_state, failures = self._apply_goal(goal_state, seen, failures)
        if self.goal is not None and self.goal.status_blob_url:
            failures += self._report(goal_state)
        return failures

    def _apply_goal(
        self, goal_state: GoalState, seen: tuple[str, Optional[str]], failures: int
    ) -> tuple[GoalState, int]:
        url = goal_state.extensions_config_url
        if url is None:
            log.info("incarnation %s has no ExtensionsConfig: nothing to run", seen[0])
            self._seen_goal, self.goal, self.outcomes = seen, None, {}
            return goal_state, failures
        content = self.wireserver.fetch_document(
            "ExtensionsConfig", url, max_bytes=CONFIG_MAX_BYTES
        )
        # Seen from here on: a malformed document is logged once, not every poll.
        self._seen_goal = seen
        goal = parse_extensions_config(content)
        self.goal = goal
        self.redactor = Redactor(s for p in goal.plugins for s in p.protected)
        log.info(
            "incarnation %s: %d plugin(s): %s",
            seen[0],
            len(goal.plugins),
            ", ".join(f"{p.name} {p.version} {p.state}" for p in goal.plugins) or "none",
        )
        artifacts = Artifacts(self.http, self.hostplugin, goal_state, self.wireserver.goal_state)
        lifecycle = Lifecycle(
            self.root, self.config, artifacts, self.wireserver.host, self.redactor
        )
        self.outcomes = {}
        unsupported = goal.unsupported_features()
        failed: list[Outcome] = []
        levels = {p.name.lower(): p.dependency_level for p in goal.plugins}
        for plugin in _order(goal.plugins):
            reason = plugin.unsupported
            if unsupported:
                reason = (
                    f"the goal state requires unsupported feature(s): {', '.join(unsupported)}"
                )
            elif plugin.state == "enabled" and plugin.dependency_level > 0:
                blockers = [
                    o.name
                    for o in failed
                    if (o.name.lower() in {d.lower() for d in plugin.depends_on})
                    or (not plugin.depends_on and levels[o.name.lower()] < plugin.dependency_level)
                ]
                if blockers:
                    reason = f"skipped: it depends on {', '.join(blockers)}, which failed"
            if reason is not None:
                current = lifecycle.current(plugin.name)
                outcome = Outcome(
                    plugin.name,
                    current.version if current else plugin.version,
                    plugin.seq_no or 0,
                    "Enable",
                    reason,
                )
                log.warning("%s: %s", plugin.name, reason)
            else:
                outcome = lifecycle.apply(plugin)
            self.outcomes[plugin.name.lower()] = outcome
            if outcome.failed:
                failed.append(outcome)
        return artifacts.goal_state, failures + len(failed)

    def _report(self, goal_state: GoalState) -> int:
        assert self.goal is not None and self.goal.status_blob_url is not None
        ext = self.config.extensions
        entries = []
        for plugin in self.goal.plugins:
            outcome = self.outcomes.get(plugin.name.lower())
            if outcome is None or not outcome.present:
                continue
            if outcome.version is None and outcome.failure is None:
                continue
            folder = (
                HandlerFolder(self.root, ext.lib_dir, ext.log_dir, outcome.name, outcome.version)
                if outcome.version
                else None
            )
            entries.append(handler_status(self.root, outcome, folder))
        document = self.redactor(aggregate_status(self.root, entries).decode()).encode()
        try:
            channel = upload_status(
                self.http,
                self.hostplugin,
                goal_state,
                self.goal.status_blob_url,
                self.goal.status_blob_type,
                document,
            )
        except AzprovError as exc:
            # Every poll fails the same way while the fabric is down: say it once.
            level = logging.DEBUG if str(exc) == self._upload_error else logging.ERROR
            log.log(level, "%s", exc)
            self._upload_error = str(exc)
            return 1
        if self._upload_error is not None:
            log.info("status uploaded through %s again", channel)
            self._upload_error = None
        log.debug("status uploaded through %s (%d bytes)", channel, len(document))
        return 0


def run_extensions(root: TargetRoot, config: Config, once: bool) -> int:
    """The `azprov extensions` command; returns the exit code."""
    from azprov.fabric.client import open_fabric
    from azprov.host.leases import wireserver_endpoint

    with open_fabric(config, wireserver_endpoint(config.wireserver.endpoint, root.path)) as fabric:
        runner = Runner(root, config, fabric.http, fabric.wireserver)
        if once:
            failures = runner.round()
            if failures:
                log.error("extensions: %d failure(s) in this round", failures)
            return 1 if failures else 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        log.info("extensions: polling every %g s", config.extensions.poll_interval)
        while not stop.is_set():
            try:
                runner.round()
            except AzprovError as exc:
                log.error("extensions: round failed: %s", exc)
            stop.wait(config.extensions.poll_interval)
        log.info("extensions: stopping (SIGTERM)")
        return 0
