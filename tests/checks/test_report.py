"""The report's lines: what comes from the image is quoted; severities are a closed set."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import click
import pytest

from azprov.checks.model import Finding, Note, Outcome, Severity
from azprov.checks.report import finding_line, render_json, render_text
from tests.checks.trees import REPO, good_tree, write
from tests.conftest import run_azprov

FORGED = "myhost\nok sshd-enabled: fake line"


def finding(path: str = "etc/hostname", found: str = "holds x", fix: str = "fix it") -> Finding:
    return Finding("hostname-generic", Severity.WARN, path, found, fix, "a source", "clones clash")


# --- finding 11: a value from the image cannot forge, split or recolour a line


def test_newline_in_an_image_value_cannot_forge_a_report_line(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    write(root, "etc/hostname", FORGED + "\n")
    run = run_azprov("--root", str(root), "check", "--only", "hostname-generic,sshd-enabled")
    lines = run.stdout.splitlines()
    assert not [line for line in lines if line.startswith("ok ")], run.stdout
    assert lines[0].startswith(
        "warn hostname-generic: etc/hostname holds myhost\\nok sshd-enabled"
    )
    assert len(lines) == 2 and lines[1].startswith("2 checks: 0 errors, 1 warning")


@pytest.mark.parametrize(
    "hostile, shown",
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("\x1b[32mok\x1b[0m", "\\x1b[32mok\\x1b[0m"),
        ("\x9b31m", "\\x9b31m"),  # the one-byte CSI
        ("\x7f\x00", "\\x7f\\x00"),
        ("x\u2028y\u2029z\x85", "x\\u2028y\\u2029z\\x85"),  # line breaks to Unicode
        ("\u202eevil", "\\u202eevil"),  # right-to-left override
        ("bad\udcffname", "bad\\udcffname"),  # a file name that is not UTF-8
        ("C:\\new", "C:\\\\new"),  # a backslash stays readable as one
        ("plain é — …", "plain é — …"),
    ],
)
def test_every_image_value_in_a_line_is_quoted(hostile: str, shown: str) -> None:
    line = finding_line(finding(path=f"etc/{hostile}", found=f"holds {hostile}", fix=hostile))
    assert line == f"warn hostname-generic: etc/{shown} holds {shown}; clones clash — {shown}"
    assert line.isprintable()
    line.encode("utf-8")  # a lone surrogate would make click.echo fail


def test_colour_comes_only_from_azprov(tmp_path: Path) -> None:
    line = finding_line(finding(found="holds \x1b[32mok\x1b[0m"), colour=True)
    ours = click.style("warn", fg="yellow", bold=False)
    assert line.startswith(ours + " hostname-generic: ")
    assert "\x1b" not in line[len(ours) :]


def test_the_text_report_is_one_line_per_finding_whatever_the_values() -> None:
    outcome = Outcome([finding(found=FORGED), finding(path="a\nb\rc")], 1, [])
    text = render_text(outcome, colour=False)
    assert len(text.splitlines()) == 3


def test_json_keeps_image_values_exact_and_escaped(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    hostile = "myhost\nok sshd-enabled: \x1b[32mfake\x1b[0m \u202e"
    write(root, "etc/hostname", hostile + "\n")
    run = run_azprov("--root", str(root), "check", "--json", "--only", "hostname-generic")
    assert "\x1b" not in run.stdout and "\u202e" not in run.stdout
    (found,) = json.loads(run.stdout)
    assert found["found"] == f"holds {hostile}"
    lines = render_json(Outcome([finding(found="\x1b\n")], 1, [])).splitlines()
    assert len(lines) == len(render_json(Outcome([finding()], 1, [])).splitlines())


# --- finding 21: a severity is one of three, checked when a note or finding is made


def test_misspelt_note_severity_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="'warning' is not a valid Severity"):
        Note("etc/x", "is wrong", "fix it", severity="warning")


def test_misspelt_finding_severity_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="'Error' is not a valid Severity"):
        Finding("machine-id", "Error", "", "", "", "", "")  # type: ignore[arg-type]


def test_note_severity_given_as_text_is_the_closed_type() -> None:
    note = Note("etc/x", "is wrong", "fix it", severity="info")
    assert note.severity is Severity.INFO
    assert Note("etc/x", "is wrong", "fix it").severity is None


def test_severity_output_is_the_same_text() -> None:
    outcome = Outcome([finding()], 1, [])
    assert render_text(outcome, colour=False).splitlines()[0].startswith("warn hostname-generic:")
    (shown,) = json.loads(render_json(outcome))
    assert shown["severity"] == "warn" and type(shown["severity"]) is str
    assert [str(s) for s in Severity] == ["error", "warn", "info"]
    assert f"{Severity.ERROR}" == "error" and Severity.WARN == "warn"
    assert outcome.count(Severity.WARN) == 1 and outcome.exit_code == 0


def _literal_severities(tree: ast.AST) -> list[tuple[int, str]]:
    """Every constant a check passes as a severity: `severity=…`, a Note's fourth argument,
    `@check(id, severity, …)`'s second, and what is assigned to a name `severity`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        values: list[ast.AST] = []
        if isinstance(node, ast.Call):
            values += [k.value for k in node.keywords if k.arg == "severity"]
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "Note" and len(node.args) > 3:
                values.append(node.args[3])
            if name == "check" and len(node.args) > 1:
                values.append(node.args[1])
        if isinstance(node, ast.Assign) and any(
            getattr(target, "id", "") == "severity" for target in node.targets
        ):
            values.append(node.value)
        for value in values:
            found += [
                (leaf.lineno, leaf.value if isinstance(leaf.value, str) else repr(leaf.value))
                for leaf in ast.walk(value)
                if isinstance(leaf, ast.Constant) and leaf.value is not None
            ]
    return found


def test_every_severity_written_in_the_checks_is_valid() -> None:
    """A typo on a path no test walks would still fail construction only when reached:
    this reads every literal the checks pass, so it fails now."""
    wrong = []
    seen = 0
    for path in sorted((REPO / "azprov/checks").glob("*.py")):
        for line, value in _literal_severities(ast.parse(path.read_text(), str(path))):
            seen += 1
            if value not in {"error", "warn", "info"}:
                wrong.append(f"{path.name}:{line}: {value!r}")
    assert seen > 40 and wrong == []


def test_the_severity_reader_finds_a_typo() -> None:
    source = 'Note("p", "f", "x", "warning")\nNote("p", "f", "x", severity="fatal")\n'
    source += 'severity = "warn" if x else "eror"\n'
    found = [value for _, value in _literal_severities(ast.parse(source))]
    assert sorted(found) == ["eror", "fatal", "warn", "warning"]
