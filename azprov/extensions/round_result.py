"""What one round of the extension runner came to, and the exit code that tells scripts."""

from __future__ import annotations

import dataclasses
from typing import Any

# `extensions --once` exit codes (README, `--help`).
EXIT_OK = 0
EXIT_AGENT_FAILED = 1  # a download, a handler command, the certificates or the upload failed
EXIT_EXTENSION_ERROR = 3  # an extension reported error (or warning) in its own status


@dataclasses.dataclass
class RoundResult:
    """What went wrong in one round: azprov's own failures, and extensions' own errors."""

    agent_failures: list[str] = dataclasses.field(default_factory=list)
    extension_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.agent_failures:
            return EXIT_AGENT_FAILED
        return EXIT_EXTENSION_ERROR if self.extension_errors else EXIT_OK


def own_status(entry: dict[str, Any]) -> tuple[str, str]:
    """(status, message) an extension wrote in its status file, as reported."""
    status = entry.get("runtimeSettingsStatus", {}).get("settingsStatus", {}).get("status", {})
    message = status.get("formattedMessage") or {}
    lines = str(message.get("message", "")).splitlines() if isinstance(message, dict) else []
    return str(status.get("status", "")), lines[0] if lines else ""
