"""The store's adapter index (``EventStore.add_adapter_version`` and friends), on SQLite and PostgreSQL.

The registry in engram_training keeps the files; these tests use plain directories for them, so
they need no model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engram_sdk import EventStore
from tests.factories import signed_events


def placer(root: Path, manifest: dict | None = None, calls: list[int] | None = None):
    """A ``place`` callback like the registry's: puts a directory at v<number>, returns its path."""

    def place(version: int) -> tuple[str, dict]:
        if calls is not None:
            calls.append(version)
        (root / f"v{version:04d}").mkdir(parents=True)
        return f"acme/v{version:04d}", {**(manifest or {}), "version": version}

    return place


def test_versions_are_numbered_per_team_and_only_a_published_one_becomes_current(store, tmp_path):
    first = store.add_adapter_version("acme", placer(tmp_path / "a"), publish=True)
    second = store.add_adapter_version("acme", placer(tmp_path / "b"), publish=False, reason="recall 0.1 < 0.5")
    other = store.add_adapter_version("zeta", placer(tmp_path / "z"), publish=True)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.status == "published" and first.current and first.path == "acme/v0001"
    assert first.manifest == {"version": 1} and first.created_at.tzinfo is not None
    assert second.status == "rejected" and not second.current and second.reason == "recall 0.1 < 0.5"
    assert store.current_adapter_version("acme") == 1
    assert [(v.version, v.current) for v in store.adapter_versions("acme")] == [(1, True), (2, False)]
    assert store.adapter_version("acme").version == 1  # None: the current one
    assert store.adapter_version("acme", 2) == second
    assert store.adapter_version("acme", 3) is None and store.adapter_version("nobody") is None
    assert store.current_adapter_version("nobody") is None and store.adapter_versions("nobody") == []
    assert store.adapter_teams() == ["acme", "zeta"]


def test_set_current_rolls_back_and_publish_marks_a_rejected_version_published(store, tmp_path):
    store.add_adapter_version("acme", placer(tmp_path), publish=True)
    store.add_adapter_version("acme", placer(tmp_path), publish=True)
    store.add_adapter_version("acme", placer(tmp_path), publish=False, reason="gate")
    store.set_current_adapter("acme", 1)
    assert store.current_adapter_version("acme") == 1 and store.adapter_version("acme", 3).status == "rejected"
    store.set_current_adapter("acme", 3, publish=True)
    now = store.adapter_version("acme")
    assert (now.version, now.status, now.current) == (3, "published", True)
    assert [v.current for v in store.adapter_versions("acme")] == [False, False, True]


def test_a_place_that_fails_indexes_nothing_and_leaves_the_number_free(store, tmp_path):
    store.add_adapter_version("acme", placer(tmp_path), publish=True)

    def crash(version: int) -> tuple[str, dict]:
        (tmp_path / f"v{version:04d}").mkdir()  # renamed into place, then the process dies
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.add_adapter_version("acme", crash, publish=True)
    assert [v.version for v in store.adapter_versions("acme")] == [1]
    assert store.current_adapter_version("acme") == 1
    # The next run gets the same number: its place finds what the crash left and must replace it.
    calls: list[int] = []

    def replace(version: int) -> tuple[str, dict]:
        calls.append(version)
        left = tmp_path / f"v{version:04d}"
        assert left.exists()
        left.rmdir()
        left.mkdir()
        return f"acme/v{version:04d}", {}

    again = store.add_adapter_version("acme", replace, publish=True)
    assert calls == [2] and again.version == 2 and store.current_adapter_version("acme") == 2


def test_concurrent_adds_get_distinct_numbers(store_url, tmp_path):
    stores = [EventStore.open(store_url) for _ in range(4)]
    got: list[int] = []
    errors: list[BaseException] = []

    def add(s: EventStore, i: int) -> None:
        try:
            got.append(s.add_adapter_version("acme", placer(tmp_path / str(i)), publish=True).version)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(s, i)) for i, s in enumerate(stores)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in stores:
        s.close()
    assert not errors and sorted(got) == [1, 2, 3, 4]


def test_events_since_adapter_counts_after_the_current_versions_watermark(store, keyring, tmp_path):
    store.append(signed_events(keyring, 3))
    assert store.events_since_adapter("acme") == store.count("acme") > 0  # no adapter: everything
    watermark = store.read("acme").cursor
    store.add_adapter_version("acme", placer(tmp_path / "1", {"watermark": watermark}), publish=True)
    assert store.adapter_version("acme").watermark == watermark
    assert store.events_since_adapter("acme") == 0
    store.append(signed_events(keyring, 2, start=3))
    assert store.events_since_adapter("acme") == store.count("acme", after=watermark) > 0
    # a rejected version does not move what the next run reads
    store.add_adapter_version("acme", placer(tmp_path / "2", {"watermark": store.read("acme", limit=10_000).cursor}),
                              publish=False)
    assert store.events_since_adapter("acme") == store.count("acme", after=watermark)


def test_deleting_a_teams_adapters_and_events_touches_no_other_team(store, keyring, tmp_path):
    store.add_adapter_version("acme", placer(tmp_path / "a"), publish=True)
    store.add_adapter_version("acme", placer(tmp_path / "b"), publish=False)
    store.add_adapter_version("zeta", placer(tmp_path / "z"), publish=True)
    store.append(signed_events(keyring, 2) + signed_events(keyring, 1, team="zeta"))
    assert store.delete_adapter_versions("acme") == 2
    assert store.adapter_versions("acme") == [] and store.current_adapter_version("acme") is None
    assert store.adapter_teams() == ["zeta"] and store.current_adapter_version("zeta") == 1
    n = store.count("acme")
    assert store.purge_team_events("acme") == n > 0
    assert store.count("acme") == 0 and store.count("zeta") > 0
    # a team indexed again after a purge starts from version 1
    assert store.add_adapter_version("acme", placer(tmp_path / "c"), publish=True).version == 1
