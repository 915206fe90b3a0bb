"""The output of `azprov check`: one line per finding and a summary, or JSON for CI gates.

Paths, values and even fixes carry text from the image: a text line quotes every
character that could end the line, start another or reach the terminal as a
control (a newline, ESC or a one-byte CSI, a bidi override, a byte that is not
UTF-8; `azprov.printable.quoted`), so a file cannot forge a finding or recolour one.
JSON escapes them itself.
"""

from __future__ import annotations

import json

import click

from azprov.checks.model import Finding, Outcome, Severity
from azprov.printable import quoted

_COLOURS = {Severity.ERROR: "red", Severity.WARN: "yellow", Severity.INFO: "cyan"}


def finding_line(finding: Finding, colour: bool = False) -> str:
    """`error machine-id: etc/machine-id holds 5f3c…; clones share it — truncate it`."""
    severity = finding.severity.value
    if colour:
        severity = click.style(severity, fg=_COLOURS[finding.severity], bold=severity == "error")
    path, found = quoted(finding.path), quoted(finding.found)
    where = f"{path} {found}" if path else found
    return (
        f"{severity} {quoted(finding.id)}: {where};"
        f" {quoted(finding.consequence)} — {quoted(finding.fix)}"
    )


def summary_line(outcome: Outcome) -> str:
    errors, warnings, infos = (outcome.count(s) for s in Severity)
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
