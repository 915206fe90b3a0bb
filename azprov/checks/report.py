"""The output of `azprov check`: one line per finding and a summary, or JSON for CI gates."""

from __future__ import annotations

import json

import click

from azprov.checks.model import Finding, Outcome

_COLOURS = {"error": "red", "warn": "yellow", "info": "cyan"}


def finding_line(finding: Finding, colour: bool = False) -> str:
    """`error machine-id: etc/machine-id holds 5f3c…; clones share it — truncate it`."""
    severity = finding.severity
    if colour:
        severity = click.style(severity, fg=_COLOURS[severity], bold=severity == "error")
    where = f"{finding.path} {finding.found}" if finding.path else finding.found
    return f"{severity} {finding.id}: {where}; {finding.consequence} — {finding.fix}"


def summary_line(outcome: Outcome) -> str:
    errors, warnings, infos = (outcome.count(s) for s in ("error", "warn", "info"))
    text = (
        f"{outcome.ran} checks: {errors} error{'s' * (errors != 1)},"
        f" {warnings} warning{'s' * (warnings != 1)}, {infos} info"
    )
    if outcome.broken:
        text += f"; could not run: {', '.join(outcome.broken)}"
    return text


def render_text(outcome: Outcome, colour: bool) -> str:
    lines = [finding_line(finding, colour) for finding in outcome.findings]
    return "\n".join([*lines, summary_line(outcome)])


def render_json(outcome: Outcome) -> str:
    return json.dumps([finding.as_json() for finding in outcome.findings], indent=2)
