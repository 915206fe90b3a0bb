"""One-line errors and the report line the platform shows (KVP, health Description)."""

from __future__ import annotations

import datetime
import re

import pytest

from azprov import AGENT_NAME
from azprov.errors import (
    DOCUMENTATION_URL,
    REPORT_MAX_BYTES,
    AzprovError,
    ConfigError,
    FabricTimeout,
    HttpStatusError,
    InvalidInput,
    ReportableError,
    one_line,
    report_line,
)

NOW = datetime.datetime(2026, 11, 22, 1, 2, 3, tzinfo=datetime.timezone.utc)
VM_ID = "d0c2b7e9-8d5c-4f1e-9a43-5b6f0e4a3c21"
TAIL = f"|vm_id={VM_ID}|timestamp=2026-11-22T01:02:03Z|documentation_url={DOCUMENTATION_URL}"


def fields(line: str) -> list[tuple[str, str]]:
    out = []
    for part in line.split("|"):
        key, sep, value = part.partition("=")
        assert sep, f"field without '=': {part!r}"
        out.append((key, value))
    return out


def test_error_report_line_format() -> None:
    error = FabricTimeout("goal state: no answer", url="http://x/", attempts=3)
    line = error.report_line(VM_ID, NOW)
    assert line == (
        f"result=error|reason=fabric_timeout|agent={AGENT_NAME}"
        "|message=goal state: no answer|url=http://x/|attempts=3" + TAIL
    )
    assert [k for k, _ in fields(line)] == [
        "result",
        "reason",
        "agent",
        "message",
        "url",
        "attempts",
        "vm_id",
        "timestamp",
        "documentation_url",
    ]


def test_message_equal_to_reason_is_not_repeated() -> None:
    line = ReportableError("disk_full", reason="disk_full").report_line(VM_ID, NOW)
    assert line == f"result=error|reason=disk_full|agent={AGENT_NAME}" + TAIL


def test_success_line_has_no_documentation_url() -> None:
    line = report_line("success", {}, VM_ID, NOW)
    assert (
        line == f"result=success|agent={AGENT_NAME}|vm_id={VM_ID}|timestamp=2026-11-22T01:02:03Z"
    )


def test_unknown_vm_id_and_default_time() -> None:
    line = ReportableError("m", reason="r").report_line(None)
    assert "|vm_id=unknown|" in line
    assert re.search(r"\|timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\|", line)


def test_pipes_and_newlines_are_neutralised() -> None:
    error = ReportableError(
        "line one\nline two|with pipe\r\x1b[31m",
        reason="bad|reason\nhere",
        **{"key|with=odd": "v|a\nl=ue"},
    )
    line = error.report_line(VM_ID, NOW)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    parsed = fields(line)
    assert [k for k, _ in parsed] == [
        "result",
        "reason",
        "agent",
        "message",
        "key/with_odd",
        "vm_id",
        "timestamp",
        "documentation_url",
    ]
    assert dict(parsed)["reason"] == "bad/reason here"
    assert dict(parsed)["message"] == "line one line two/with pipe  [31m"
    assert dict(parsed)["key/with_odd"] == "v/a l=ue"


@pytest.mark.parametrize("size", [1000, 1023, 1024, 5000, 100_000])
def test_long_supporting_data_is_cut_keeping_the_identity(size: int) -> None:
    error = HttpStatusError("x" * size, status=400, body="é" * size)
    line = error.report_line(VM_ID, NOW)
    assert len(line.encode()) <= REPORT_MAX_BYTES
    assert line.startswith(f"result=error|reason=http_error|agent={AGENT_NAME}|message=")
    assert line.endswith(TAIL)
    line.encode().decode("utf-8")  # never a split character


@pytest.mark.parametrize("size", [1023, 3000, 50_000])
def test_long_reason_is_cut_keeping_the_identity(size: int) -> None:
    # `azprov report-failure TEXT` makes TEXT the reason: it can be anything.
    line = ReportableError("r" * size, reason="r" * size).report_line(VM_ID, NOW)
    assert len(line.encode()) <= REPORT_MAX_BYTES
    assert line.startswith("result=error|reason=rrrr")
    assert f"|agent={AGENT_NAME}|" in line
    assert line.endswith(TAIL)


def test_long_multibyte_reason_is_cut_on_a_character_boundary() -> None:
    line = ReportableError("m", reason="界" * 2000).report_line(VM_ID, NOW)
    assert len(line.encode()) <= REPORT_MAX_BYTES
    assert line.endswith(TAIL)
    assert "\ufffd" not in line


def test_line_at_exactly_the_limit_is_kept_whole() -> None:
    fixed = len(ReportableError("r", reason="r").report_line(VM_ID, NOW).encode())
    room = REPORT_MAX_BYTES - fixed - len("|k=")
    line = ReportableError("r", reason="r", k="v" * room).report_line(VM_ID, NOW)
    assert len(line.encode()) == REPORT_MAX_BYTES
    assert "..." not in line
    longer = ReportableError("r", reason="r", k="v" * (room + 1)).report_line(VM_ID, NOW)
    assert len(longer.encode()) <= REPORT_MAX_BYTES and "..." in longer


def test_errors_are_one_line() -> None:
    assert str(AzprovError("a\nb\tc\x00")) == "a b c"
    assert one_line("  x\r\n") == "x"
    assert ConfigError("x").exit_code == 2
    assert AzprovError("x").exit_code == 1


def test_invalid_input_names_the_field_and_redacts_secrets() -> None:
    shown = InvalidInput("osProfile.adminUsername", "ro ot", "contains a space")
    assert str(shown) == "osProfile.adminUsername='ro ot' is invalid: contains a space"
    hidden = InvalidInput("UserPassword", "hunter2", "too long", secret=True)
    assert "hunter2" not in str(hidden)
    assert "hunter2" not in hidden.report_line(VM_ID, NOW)
    long_value = InvalidInput("f", "v" * 500, "too long")
    assert len(long_value.supporting_data["value"]) == 120
