"""Checking and storing signed events from outside: JSON Lines files now, HTTP batches later.

One check for every envelope, whatever brought it (``check_envelope``): parse the JSON, validate
the CloudEvents envelope and its record, then verify the signature against the keys trusted for
the event's team. A failure is a ``Rejection`` carrying a stable reason word:

    malformed_json, schema_error, line_too_large, conflict,
    bad_signature, unknown_key, untrusted_for_team, revoked_key, missing_signature, id_mismatch

Files are read line by line with a bounded buffer, so a 50 MB line costs 8 MiB of memory and one
rejection, not an out-of-memory kill. ``import_file`` checks the whole file first and, unless
``partial``, stores nothing when any line is bad; it stores in batches, one transaction each, and
since ids are content-derived a rerun after a crash stores exactly what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._events import MAX_EVENT_BYTES, TrainingEvent, content_digest, parse_event
from ._exceptions import EventError, SignatureError
from ._signing import TrustedKeys, verify_event
from ._store import AppendResult, EventStore

__all__ = ["FileReport", "Rejection", "check_envelope", "import_file", "iter_lines", "verify_file"]


@dataclass(frozen=True)
class Rejection(Exception):
    reason: str
    message: str
    line: int | None = None
    event_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.reason}: {self.message}"


@dataclass
class FileReport:
    path: str
    lines: int = 0
    valid: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    stored: AppendResult = field(default_factory=AppendResult)

    @property
    def ok(self) -> bool:
        return not self.rejected

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "lines": self.lines,
            "valid": self.valid,
            "rejected": [
                {"line": r.line, "reason": r.reason, "message": r.message, "event_id": r.event_id}
                for r in self.rejected
            ],
            "accepted": len(self.stored.accepted),
            "duplicates": len(self.stored.duplicates),
            "conflicts": len(self.stored.conflicts),
        }


def check_envelope(raw: bytes | str | dict[str, Any], trusted: TrustedKeys) -> TrainingEvent:
    """Parse, validate and verify one envelope; raises ``Rejection`` with the reason."""
    if not isinstance(raw, dict):
        try:
            raw = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejection("malformed_json", str(exc)) from None
    event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    try:
        event = parse_event(raw)
    except EventError as exc:
        raise Rejection("schema_error", str(exc), event_id=event_id) from None
    try:
        verify_event(event, trusted)
    except SignatureError as exc:
        raise Rejection(exc.reason, str(exc), event_id=event_id) from None
    return event


def iter_lines(path: Path, limit: int = MAX_EVENT_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, bytes) for each non-empty line; bytes is None for a line over ``limit``."""
    with open(path, "rb") as f:
        number = 0
        while True:
            line = f.readline(limit + 1)
            if not line:
                return
            number += 1
            if len(line) > limit and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest of the oversize line
                    line = f.readline(1 << 20)
                yield number, None
                continue
            if line.strip():
                yield number, line


def _check_file(
    path: Path, trusted: TrustedKeys, store: EventStore | None, on_line: Callable[[], None] | None
) -> tuple[FileReport, list[int]]:
    report = FileReport(path=str(path))
    good: list[int] = []
    seen: dict[tuple[str, str], str] = {}  # (team, id) -> digest within this file
    pending: list[tuple[int, TrainingEvent, str]] = []

    def flush() -> None:
        # Conflicts with what is already stored are found now, so that a default import stores
        # nothing from a file that would conflict.
        stored = store.digests([(ev.teamid, ev.id) for _, ev, _ in pending]) if store else {}
        for number, ev, digest in pending:
            old = stored.get((ev.teamid, ev.id))
            if old is not None and old != digest:
                report.rejected.append(Rejection("conflict", "stored with different content", number, ev.id))
            else:
                good.append(number)
                report.valid += 1
        pending.clear()

    for number, line in iter_lines(path):
        report.lines = number
        if on_line:
            on_line()
        if line is None:
            report.rejected.append(Rejection("line_too_large", f"longer than {MAX_EVENT_BYTES} bytes", number))
            continue
        try:
            event = check_envelope(line, trusted)
        except Rejection as r:
            report.rejected.append(Rejection(r.reason, r.message, number, r.event_id))
            continue
        digest = content_digest(event)
        key = (event.teamid, event.id)
        if key in seen and seen[key] != digest:
            report.rejected.append(Rejection("conflict", "same id as an earlier line, different content",
                                             number, event.id))
            continue
        seen[key] = digest
        pending.append((number, event, digest))
        if len(pending) >= 500:
            flush()
    flush()
    return report, good


def verify_file(path: Path, trusted: TrustedKeys, *, store: EventStore | None = None,
                on_line: Callable[[], None] | None = None) -> FileReport:
    """Check every line; with a store, lines that conflict with stored events are rejected too."""
    return _check_file(Path(path), trusted, store, on_line)[0]


def import_file(
    path: Path,
    store: EventStore,
    *,
    partial: bool = False,
    batch_size: int = 500,
    on_line: Callable[[], None] | None = None,
    on_stored: Callable[[int], None] | None = None,
) -> FileReport:
    """Check the whole file, then store its events in batches (see the module docstring)."""
    path = Path(path)
    trusted = store.trusted_keys()
    report, good = _check_file(path, trusted, store, on_line)
    if report.rejected and not partial:
        return report
    wanted = set(good)
    batch: list[TrainingEvent] = []
    for number, line in iter_lines(path):
        if number not in wanted or line is None:
            continue
        # Parsed again rather than held from the first pass, so memory stays flat on big files.
        batch.append(parse_event(line))
        if len(batch) >= batch_size:
            report.stored.merge(store.append(batch))
            if on_stored:
                on_stored(len(batch))
            batch = []
    if batch:
        report.stored.merge(store.append(batch))
        if on_stored:
            on_stored(len(batch))
    for eid in report.stored.conflicts:  # a concurrent writer got there first with other content
        report.rejected.append(Rejection("conflict", "stored with different content", None, eid))
    return report
