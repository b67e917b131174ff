"""History export windows and the de-duplication of their overlap.

Harvey's history endpoints take ``start_time`` / ``end_time`` in UTC epoch seconds, return the
whole window in one answer (no pagination), accept at most 30 days per call and nothing older
than a year. The connector reads one day per call (Harvey's advice), never further back than
364 days, and re-reads a day before its checkpoint; the same ``unique_usage_id`` can therefore
arrive more than once, and ``UsageDeduplicator`` lets each through once (again only if its
content changed, e.g. feedback added later).

All times are integers (epoch seconds) so the arithmetic is exact and testable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._assumptions import HISTORY_LOOKBACK_DAYS, HISTORY_MAX_WINDOW_DAYS, HISTORY_WINDOW_DAYS

__all__ = [
    "DAY",
    "UsageDeduplicator",
    "Window",
    "check_window",
    "history_windows",
]

DAY = 86_400


@dataclass(frozen=True, order=True)
class Window:
    """``start_time`` .. ``end_time`` of one history call, epoch seconds, both as sent."""

    start: int
    end: int

    @property
    def span(self) -> int:
        return self.end - self.start

    def params(self) -> dict[str, int]:
        return {"start_time": self.start, "end_time": self.end}


def check_window(
    start: int,
    end: int,
    *,
    now: int,
    max_days: int = HISTORY_MAX_WINDOW_DAYS,
    lookback_days: int = HISTORY_LOOKBACK_DAYS,
) -> None:
    """Raise ``ValueError`` naming the rule a window breaks; return quietly when it is valid."""
    if end < start:
        raise ValueError("end_time is before start_time")
    if end - start > max_days * DAY:
        raise ValueError(f"a history window spans at most {max_days} days")
    if start < now - lookback_days * DAY:
        raise ValueError(f"start_time may be at most {lookback_days} days back")


def history_windows(
    since: int,
    until: int,
    *,
    now: int,
    window_days: int = HISTORY_WINDOW_DAYS,
    lookback_days: int = HISTORY_LOOKBACK_DAYS,
) -> Iterator[Window]:
    """The windows that cover ``since`` .. ``until``, oldest first.

    ``since`` is clamped to ``now - lookback_days`` and ``until`` to ``now``; each window spans
    ``window_days`` (the last one may be shorter). Consecutive windows share their edge second
    (``end`` of one is ``start`` of the next), because Harvey's bounds are taken as inclusive:
    nothing falls between two windows, and what sits on the edge is de-duplicated.
    """
    if not 1 <= window_days <= HISTORY_MAX_WINDOW_DAYS:
        raise ValueError(f"window_days must be between 1 and {HISTORY_MAX_WINDOW_DAYS}")
    if not 1 <= lookback_days <= 365:
        raise ValueError("lookback_days must be between 1 and 365")
    start = max(since, now - lookback_days * DAY)
    until = min(until, now)
    step = window_days * DAY
    while start < until:
        end = min(start + step, until)
        yield Window(start, end)
        start = end


class UsageDeduplicator:
    """Lets each ``unique_usage_id`` through once, or again when its content digest changed.

    ``state()`` is what the checkpoint keeps: id -> [digest, epoch of the query]. ``prune(before)``
    forgets queries older than the re-read overlap, so the checkpoint stays small.
    """

    def __init__(self, seen: dict[str, list[Any]] | None = None):
        self._seen: dict[str, tuple[str, int]] = {k: (str(v[0]), int(v[1])) for k, v in (seen or {}).items()}
        self.skipped = 0

    def admit(self, usage_id: str, digest: str, at: int) -> bool:
        prev = self._seen.get(usage_id)
        if prev is not None and prev[0] == digest:
            self.skipped += 1
            return False
        self._seen[usage_id] = (digest, at)
        return True

    def prune(self, before: int) -> None:
        self._seen = {k: v for k, v in self._seen.items() if v[1] >= before}

    def state(self) -> dict[str, list[Any]]:
        return {k: [d, t] for k, (d, t) in sorted(self._seen.items())}

    def __len__(self) -> int:
        return len(self._seen)
