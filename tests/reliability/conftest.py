"""The reliability suite: attacks and faults replayed against real local servers and sandboxes,
counted as one table of tried / held (docs/reliability.md).

Each test adds rows to a session tally: ``trial = tally.row("tampered events: CLI verify, SQLite")``,
then ``trial.check(held, what)`` per attempt, where ``held`` is True when the system did the right
thing (refused the attack with the expected reason, lost and duplicated nothing). A test fails if
any of its attempts did not hold, naming them; at the end the table is printed, and written as
Markdown to ``$ENGRAM_RELIABILITY_REPORT`` when that is set.

Two sizes: bounded (the default, what CI runs; well under three minutes) and full
(``ENGRAM_RELIABILITY=full``: more kill points, bigger workspaces, longer storms, every tampering
kind on every path and backend), run by hand before a release:

    ENGRAM_RELIABILITY=full ENGRAM_RELIABILITY_REPORT=reliability.md \\
        .venv/bin/python -m pytest tests/reliability -q
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FULL = os.environ.get("ENGRAM_RELIABILITY", "").strip().lower() == "full"


def scale(bounded: int, full: int) -> int:
    """A size for this run: ``bounded`` in CI, ``full`` when run by hand."""
    return full if FULL else bounded


@dataclass
class Row:
    scenario: str
    tried: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)

    def check(self, held: bool, what: str) -> None:
        self.tried += 1
        if held:
            self.held += 1
        else:
            self.failures.append(what)


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def row(self, scenario: str) -> Row:
        return self.rows.setdefault(scenario, Row(scenario))

    def table(self) -> str:
        lines = ["| scenario | tried | held |", "|---|---:|---:|"]
        for r in self.rows.values():
            lines.append(f"| {r.scenario} | {r.tried} | {r.held} |")
        tried = sum(r.tried for r in self.rows.values())
        held = sum(r.held for r in self.rows.values())
        lines.append(f"| **all** | **{tried}** | **{held}** |")
        return "\n".join(lines)


_TALLY = Tally()


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    """The session's tally; the test fails if an attempt it recorded did not hold."""
    before = {name: len(r.failures) for name, r in _TALLY.rows.items()}
    yield _TALLY
    failed = []
    for name, r in _TALLY.rows.items():
        failed += [f"{name}: {f}" for f in r.failures[before.get(name, 0):]]
    if failed:
        pytest.fail("did not hold:\n  " + "\n  ".join(failed[:40]), pytrace=False)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not _TALLY.rows:
        return
    mode = "full" if FULL else "bounded (CI)"
    terminalreporter.write_sep("=", f"reliability: tried / held ({mode})")
    terminalreporter.write_line(_TALLY.table())
    out = os.environ.get("ENGRAM_RELIABILITY_REPORT")
    if out:
        Path(out).write_text(f"Mode: {mode}\n\n{_TALLY.table()}\n")
