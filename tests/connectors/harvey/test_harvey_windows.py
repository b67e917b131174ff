"""History window arithmetic: one-day steps, the 30-day and 364-day edges, overlap de-duplication."""

from __future__ import annotations

import pytest

from engram_harvey._windows import DAY, UsageDeduplicator, Window, check_window, history_windows

NOW = 1_760_000_000  # a fixed "now", epoch seconds


def test_windows_are_one_day_and_share_their_edges():
    windows = list(history_windows(NOW - 3 * DAY, NOW, now=NOW))
    assert windows == [
        Window(NOW - 3 * DAY, NOW - 2 * DAY),
        Window(NOW - 2 * DAY, NOW - DAY),
        Window(NOW - DAY, NOW),
    ]
    assert all(w.span == DAY for w in windows)


def test_last_window_is_cut_at_until():
    windows = list(history_windows(NOW - DAY - 100, NOW - 50, now=NOW))
    assert windows == [Window(NOW - DAY - 100, NOW - 100), Window(NOW - 100, NOW - 50)]


def test_until_in_the_future_is_clamped_to_now():
    assert list(history_windows(NOW - 10, NOW + DAY, now=NOW)) == [Window(NOW - 10, NOW)]


def test_empty_range_gives_no_window():
    assert list(history_windows(NOW, NOW, now=NOW)) == []


def test_thirty_day_windows_are_the_widest_allowed():
    windows = list(history_windows(NOW - 60 * DAY, NOW, now=NOW, window_days=30))
    assert [w.span for w in windows] == [30 * DAY, 30 * DAY]
    for w in windows:
        check_window(w.start, w.end, now=NOW)


def test_thirty_one_day_windows_are_refused():
    with pytest.raises(ValueError, match="between 1 and 30"):
        list(history_windows(NOW - 60 * DAY, NOW, now=NOW, window_days=31))


def test_check_window_accepts_exactly_thirty_days():
    check_window(NOW - 30 * DAY, NOW, now=NOW)


def test_check_window_rejects_thirty_days_and_one_second():
    with pytest.raises(ValueError, match="at most 30 days"):
        check_window(NOW - 30 * DAY - 1, NOW, now=NOW)


def test_lookback_keeps_a_start_exactly_364_days_back():
    first = next(history_windows(NOW - 364 * DAY, NOW, now=NOW))
    assert first.start == NOW - 364 * DAY
    check_window(first.start, first.end, now=NOW)


def test_lookback_clamps_a_start_older_than_364_days():
    windows = list(history_windows(NOW - 400 * DAY, NOW, now=NOW))
    assert windows[0].start == NOW - 364 * DAY
    assert len(windows) == 364
    assert windows[-1].end == NOW


def test_check_window_rejects_a_start_364_days_and_one_second_back():
    with pytest.raises(ValueError, match="364 days back"):
        check_window(NOW - 364 * DAY - 1, NOW - 363 * DAY, now=NOW)


def test_check_window_rejects_end_before_start():
    with pytest.raises(ValueError, match="before"):
        check_window(NOW, NOW - 1, now=NOW)


def _events_in(window: Window, events: list[dict]) -> list[dict]:
    """What a history call returns for a window: both bounds inclusive."""
    return [e for e in events if window.start <= e["t"] <= window.end]


def test_duplicates_across_overlapping_windows_are_admitted_once():
    edge = NOW - DAY
    events = [{"id": "a", "t": edge}, {"id": "b", "t": NOW - 100}, {"id": "c", "t": NOW - 2 * DAY + 5}]
    windows = list(history_windows(NOW - 2 * DAY, NOW, now=NOW))
    # the event on the shared edge is returned by both windows
    assert sum(1 for w in windows for e in _events_in(w, events) if e["id"] == "a") == 2
    dedup = UsageDeduplicator()
    admitted = [e["id"] for w in windows for e in _events_in(w, events) if dedup.admit(e["id"], "d", e["t"])]
    assert sorted(admitted) == ["a", "b", "c"]
    assert dedup.skipped == 1


def test_rereading_the_overlap_on_the_next_sync_admits_nothing_new():
    dedup = UsageDeduplicator()
    assert dedup.admit("a", "d1", NOW - 10)
    carried = UsageDeduplicator(dedup.state())  # through the checkpoint
    assert not carried.admit("a", "d1", NOW - 10)


def test_changed_content_under_the_same_usage_id_is_admitted_again():
    dedup = UsageDeduplicator()
    assert dedup.admit("a", "without-feedback", NOW - 10)
    assert dedup.admit("a", "with-feedback", NOW - 10)
    assert not dedup.admit("a", "with-feedback", NOW - 10)


def test_prune_forgets_queries_older_than_the_overlap():
    dedup = UsageDeduplicator({"old": ["d", NOW - 3 * DAY], "new": ["d", NOW - 10]})
    dedup.prune(NOW - DAY)
    assert list(dedup.state()) == ["new"]
