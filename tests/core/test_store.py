from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from engram_sdk import EventStore, StoreError, parse_event
from tests.factories import signed_events


def test_append_then_read_back_verbatim(store, keyring):
    events = signed_events(keyring, 3)
    result = store.append(events)
    assert result.accepted == [e.id for e in events] and not result.duplicates and not result.conflicts
    page = store.read("acme")
    assert [e.envelope for e in page.events] == [e.to_dict() for e in events]


def test_same_id_same_content_is_a_duplicate(store, keyring):
    events = signed_events(keyring, 2)
    store.append(events)
    again = store.append(events)
    assert again.duplicates == [e.id for e in events] and not again.accepted
    assert store.count("acme") == 2


def test_a_resign_with_a_rotated_key_is_a_duplicate_not_a_conflict(store, keyring):
    (ev,) = signed_events(keyring, 1)
    store.append([ev])
    keyring.rotate()
    (resigned,) = signed_events(keyring, 1)
    assert resigned.id == ev.id and resigned.engramsig != ev.engramsig
    assert store.append([resigned]).duplicates == [ev.id]


def test_same_id_different_content_is_a_conflict_and_the_stored_event_is_untouched(store, keyring):
    (ev,) = signed_events(keyring, 1)
    store.append([ev])
    forged = ev.to_dict()
    forged["data"]["text"] = "rewritten history"
    result = store.append([parse_event(forged)])
    assert result.conflicts == [ev.id] and not result.accepted
    assert store.get("acme", ev.id).envelope == ev.to_dict()


def test_a_conflict_within_one_batch_keeps_the_first(store, keyring):
    (ev,) = signed_events(keyring, 1)
    forged = ev.to_dict()
    forged["data"]["title"] = "other"
    result = store.append([ev, parse_event(forged), ev])
    assert result.accepted == [ev.id] and result.conflicts == [ev.id] and result.duplicates == [ev.id]
    assert store.count() == 1


def test_teams_are_partitions(store, keyring, tmp_path):
    from engram_sdk import Keyring

    other = Keyring(tmp_path / "globex-keys")
    other.generate(["globex"])
    store.append(signed_events(keyring, 3) + signed_events(other, 2, team="globex"))
    assert store.count("acme") == 3 and store.count("globex") == 2
    assert {e.envelope["teamid"] for e in store.iter_events("globex")} == {"globex"}
    # The same platform entity in two teams' scopes is stored once per team.
    same = signed_events(other, 1, team="globex", start=0)
    assert store.append(same).duplicates and store.teams() == ["acme", "globex"]


def test_cursor_pages_are_stable_and_resumable(store, keyring):
    events = signed_events(keyring, 25)
    for i in range(0, 25, 10):
        store.append(events[i : i + 10])
    seen, cursor = [], None
    while True:
        page = store.read("acme", after=cursor, limit=7)
        if not page.events:
            break
        seen += [e.event_id for e in page.events]
        cursor = page.cursor
    assert seen == [e.id for e in events]
    # A reader that stopped resumes exactly after the last event it saw, even after new appends.
    more = signed_events(keyring, 3, start=100)
    store.append(more)
    assert [e.event_id for e in store.read("acme", after=cursor).events] == [e.id for e in more]


def test_a_foreign_cursor_is_refused(store):
    with pytest.raises(ValueError, match="cursor"):
        store.read("acme", after="not-a-cursor")


def test_checkpoint_is_saved_with_its_batch(store, keyring):
    store.append(signed_events(keyring, 2), checkpoint=("acme-notion", {"cursor": "abc", "n": 2}))
    assert store.checkpoint("acme-notion") == {"cursor": "abc", "n": 2}
    store.append(signed_events(keyring, 2, start=2), checkpoint=("acme-notion", {"cursor": "def", "n": 4}))
    assert store.checkpoint("acme-notion") == {"cursor": "def", "n": 4}
    assert store.checkpoint("unknown") is None


def test_a_failing_batch_stores_neither_its_events_nor_its_checkpoint(store, keyring):
    store.append(signed_events(keyring, 1), checkpoint=("acme-notion", {"cursor": "first"}))
    with pytest.raises(TypeError):
        store.append(signed_events(keyring, 3, start=1), checkpoint=("acme-notion", {"cursor": object()}))
    assert store.count("acme") == 1
    assert store.checkpoint("acme-notion") == {"cursor": "first"}


def test_schema_is_versioned_and_reopening_migrates_without_loss(store_url, keyring):
    with EventStore.open(store_url) as s:
        s.append(signed_events(keyring, 4))
        assert s.schema_version() == s.head_version() != ()
    with EventStore.open(store_url) as s:
        assert s.count("acme") == 4
        with s.engine.connect() as conn:
            versions = {r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
        assert versions == set(s.head_version())


def test_upgrade_from_the_first_version_keeps_the_data(store_url, keyring):
    """A store left at revision 0001 (an older SDK) upgrades to every newer branch head intact."""
    from alembic import command

    with EventStore.open(store_url, migrate=False) as s:
        with s._write() as conn:
            command.upgrade(s._alembic(conn), "0001")
        s.append(signed_events(keyring, 3))
    with EventStore.open(store_url) as s:
        assert s.schema_version() == s.head_version()
        assert s.count("acme") == 3


def test_a_training_job_queued_before_progress_was_recorded_survives_the_upgrade(store_url):
    """Migration 0006 adds the job's progress columns to a table that already holds jobs."""
    from alembic import command

    from engram_sdk._jobs import Jobs

    with EventStore.open(store_url, migrate=False) as s:
        with s._write() as conn:
            command.upgrade(s._alembic(conn), "0004")
            conn.execute(sa.text("INSERT INTO train_jobs (job_id, team_id, status, from_scratch, cancel_requested, "
                                 "created_at) VALUES ('j1', 'acme', 'queued', false, false, '2026-12-01 10:00:00')"))
    with EventStore.open(store_url) as s:
        jobs = Jobs(s)
        job = jobs.get("j1")
        assert job is not None and job.status == "queued" and job.step is None and job.progress_at is None
        jobs.report_progress("j1", 3, 40)
        job = jobs.get("j1")
        assert (job.step, job.total_steps) == (3, 40) and job.progress_at is not None


def test_unreachable_database_is_a_clear_error_without_the_password():
    with pytest.raises(StoreError) as err:
        EventStore.open("postgresql://engram:hunter2@127.0.0.1:1/nowhere")
    assert "cannot open the event store" in str(err.value) and "hunter2" not in str(err.value)


def test_trust_revocation_sticks(store, keyring):
    from engram_sdk import load_key_set

    store.trust(load_key_set(keyring.export_public()))
    kid = keyring.active().kid
    assert store.revoke_key(kid) == 1
    store.trust(load_key_set(keyring.export_public()))  # re-importing an old key set does not un-revoke
    assert store.trusted_keys().by_kid[kid]["acme"].status == "revoked"


def test_stored_envelope_is_the_received_json(store, keyring):
    (ev,) = signed_events(keyring, 1)
    body = ev.to_dict()
    body["time"] = "2026-03-01T09:00:00.000+00:00"
    store.append([parse_event(json.dumps(body))])
    assert store.get("acme", ev.id).envelope["time"] == "2026-03-01T09:00:00.000+00:00"



def test_count_after_a_cursor_counts_only_what_was_stored_later(store, keyring):
    store.append(signed_events(keyring, 3))
    cursor = store.read("acme").cursor
    store.append(signed_events(keyring, 2, start=3))
    later = store.read("acme", after=cursor, limit=10_000)
    assert 0 < store.count("acme", after=cursor) == len(later.events) < store.count("acme")
    assert store.count("acme", after=later.cursor) == 0
    assert store.count("acme", after=None) == store.count("acme") and store.count("other", after=cursor) == 0
