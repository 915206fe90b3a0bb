"""The fuzz stage's Hypothesis profiles, chosen by AZPROV_FUZZ_PROFILE (default `ci`).

- `ci`: derandomized (a fixed seed per target, from its source), so a run is the
  same on every machine. Hypothesis turns the database off with a fixed seed
  (derandomize=True or @seed alike), so test_replay.py runs the targets a
  second time, in a process of its own, under `replay`.
- `replay`: only the examples saved in tests/fuzz/examples/, read-only: whatever
  a long run once found is replayed by every CI run, until a long run sees it
  pass (then it drops it; the named regression tests stay).
- `long` (scripts/fuzz): random seeds, many examples, the same database
  writable; each target runs again and again until its share of
  AZPROV_FUZZ_MINUTES is spent, and the summary lists examples per target.

The database key of a target is a digest of its source: editing a target
forgets what was saved for it.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ReadOnlyDatabase

from tests.fuzz.hostile import PROFILE

EXAMPLES = Path(__file__).parent / "examples"
HERE = Path(__file__).parent

_common: dict[str, Any] = {
    # Big documents are the point; Hypothesis need not warn that making them is slow.
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("ci", derandomize=True, **_common)
settings.register_profile(
    "replay",
    database=ReadOnlyDatabase(DirectoryBasedExampleDatabase(EXAMPLES)),
    phases=[Phase.explicit, Phase.reuse],
    **_common,
)
settings.register_profile(
    "long",
    database=DirectoryBasedExampleDatabase(EXAMPLES),
    **_common,
)
if PROFILE not in ("ci", "replay", "long"):
    raise pytest.UsageError(f"AZPROV_FUZZ_PROFILE={PROFILE!r}: expected ci, replay or long")
settings.load_profile(PROFILE)

_budget_seconds = 0.0
_targets: set[str] = set()
_examples: dict[str, int] = {}
_seconds: dict[str, float] = {}
_outcomes: dict[str, str] = {}


@pytest.fixture(autouse=True)
def python39_ints() -> Iterator[None]:
    """int() as on Python 3.9 (RHEL 9), where no digit limit stops a long number (and
    int() of one is quadratic): 3.11 and later refuse over 4300 digits, which would
    hide from the fuzzer what 3.9 spends seconds on. Lifted here, for these tests."""
    limit = getattr(sys, "get_int_max_str_digits", lambda: None)()
    if limit is not None:
        sys.set_int_max_str_digits(0)
    yield
    if limit is not None:
        sys.set_int_max_str_digits(limit)


def _is_target(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).parents and hasattr(item.obj, "hypothesis")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _budget_seconds
    targets = [item for item in items if _is_target(item)]
    _targets.update(item.nodeid for item in targets)
    if PROFILE == "replay":  # only what reads the database
        config.hook.pytest_deselected(items=[item for item in items if item not in targets])
        items[:] = targets
    if PROFILE != "long":
        return
    minutes = float(os.environ.get("AZPROV_FUZZ_MINUTES", "30"))
    _budget_seconds = minutes * 60 / max(len(targets), 1)
    for item in targets:
        _count_examples(item)


def _count_examples(item: pytest.Item) -> None:
    """Count each example the target runs. functools.wraps keeps the database key
    (a digest of the source, found through __wrapped__) the one CI replays."""
    handle = item.obj.hypothesis
    inner = handle.inner_test
    if getattr(inner, "_azprov_counted", False):
        return
    name = item.nodeid

    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        _examples[name] = _examples.get(name, 0) + 1
        return inner(*args, **kwargs)

    counted._azprov_counted = True  # type: ignore[attr-defined]
    handle.inner_test = counted


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """In the long run, run a target again (a fresh seed each time) until its share is spent."""
    started = time.monotonic()
    try:
        result = yield
        if PROFILE == "long" and _is_target(item):
            while time.monotonic() - started < _budget_seconds:
                item.runtest()
        return result
    finally:
        if item.nodeid in _targets:
            _seconds[item.nodeid] = time.monotonic() - started


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _targets and (report.when == "call" or report.outcome != "passed"):
        _outcomes[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PROFILE != "long" or not _seconds:
        return
    write = terminalreporter.write_line
    write("")
    write(f"fuzz: {len(_seconds)} targets, {_budget_seconds:.0f} s each")
    for nodeid in sorted(_seconds):
        name = nodeid.split("::", 1)[-1]
        write(
            f"  {name:<72} {_examples.get(nodeid, 0):>8} examples "
            f"{_seconds[nodeid]:>7.1f} s  {_outcomes.get(nodeid, '?')}"
        )
    total = sum(_examples.values())
    failed = sum(1 for outcome in _outcomes.values() if outcome == "failed")
    write(f"fuzz: {total} examples in {sum(_seconds.values()):.0f} s, {failed} failed target(s)")
