"""The id rule is checked wherever events come in: ``id`` must be sha256 of [source, type, subject,
revision] of the envelope's own content, or the event is refused as ``id_mismatch`` even when its
signature is good (a trusted signer could otherwise store one record twice, or take a genuine
event's id in advance so that the genuine one is refused as a conflict).

The paths: ``verify_event`` / ``TrustedKeys.verify`` (what the trainer's ``collect`` calls),
``check_envelope`` (HTTP ingest), ``verify_file`` / ``import_file`` (``engram events verify`` and
``import``, on SQLite and PostgreSQL). The CLI and HTTP paths have their own tests in
tests/core/test_cli.py and tests/server/test_api.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engram_sdk import (
    Document,
    Edit,
    EventStore,
    Keyring,
    SignatureError,
    Thread,
    Tombstone,
    TrustedKeys,
    build_events,
    load_key_set,
    verify_event,
)
from engram_sdk._canonical import canonical_json
from engram_sdk._events import EVENT_TYPES, event_id, id_problem, record_revision
from engram_sdk._ingest import Rejection, check_envelope, import_file, verify_file
from engram_sdk._records import Limits, Message, Person, split_record
from engram_sdk._signing import _b64u
from tests.factories import make_doc, signed_events

SRC = "notion://workspace/ws-1"


def trusted(keyring: Keyring) -> TrustedKeys:
    return TrustedKeys.of(load_key_set(keyring.export_public()))


def reason_of(event, trust: TrustedKeys) -> str:
    with pytest.raises(SignatureError) as err:
        verify_event(event, trust)
    return err.value.reason


def resigned(keyring: Keyring, body: dict) -> dict:
    """What a holder of a trusted key can do: sign any envelope it likes."""
    return keyring.sign(body).to_dict()


# --- the findings of issue 17, one by one ---------------------------------------------------------


def test_a_validly_signed_event_with_a_changed_subject_and_the_old_id_is_refused(keyring):
    body = signed_events(keyring, 1)[0].to_dict()
    body["subject"] = "page-99"
    assert reason_of(resigned(keyring, body), trusted(keyring)) == "id_mismatch"


def test_a_validly_signed_event_with_an_id_of_zeros_is_refused(keyring):
    body = signed_events(keyring, 1)[0].to_dict()
    body["id"] = "0" * 64
    with pytest.raises(SignatureError) as err:
        trusted(keyring).verify(resigned(keyring, body))  # the call the trainer's collect makes
    assert err.value.reason == SignatureError.ID_MISMATCH == "id_mismatch"
    assert err.value.event_id == "0" * 64 and "hash of [source, type, subject, revision]" in str(err.value)


def test_an_event_cannot_take_a_genuine_events_id_in_advance(keyring):
    genuine, other = signed_events(keyring, 2)
    squatter = other.to_dict()
    squatter["id"] = genuine.id
    assert reason_of(resigned(keyring, squatter), trusted(keyring)) == "id_mismatch"
    verify_event(genuine, trusted(keyring))  # the genuine event itself still verifies


def test_a_copy_of_a_record_under_a_new_subject_with_a_matching_id_is_refused(keyring):
    # The id recomputed from the new subject would match; the record still names its own entity.
    body = signed_events(keyring, 1)[0].to_dict()
    body["subject"] = "page-copy"
    body["id"] = event_id(SRC, body["type"], "page-copy", "sha256:whatever")
    problem = id_problem(resigned(keyring, body))
    assert problem is not None and "subject" in problem


def test_a_type_that_is_not_the_records_is_an_id_mismatch_for_plain_json(keyring):
    # parse_event (and so Keyring.sign) refuses such an envelope as a schema error; the trainer
    # verifies plain JSON from the store, so verify_event must refuse it on its own.
    body = signed_events(keyring, 1)[0].to_dict()
    body["type"] = "ai.engram.entity.deleted"
    kid, key = keyring.signer()
    body.pop("engramsig")
    body["engramkid"] = kid
    body["engramsig"] = _b64u(key.sign(canonical_json(body)))
    assert reason_of(body, trusted(keyring)) == "id_mismatch"


def test_a_forged_signature_is_reported_as_forged_not_as_a_bad_id(keyring):
    body = signed_events(keyring, 1)[0].to_dict()
    body["id"] = "0" * 64  # changed after signing
    assert reason_of(body, trusted(keyring)) == "bad_signature"


# --- every record kind and split parts ------------------------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def _records():
    who = Person(id="u1", name="Ada")
    msg = Message(id="m1", author=who, created_at=T0, text="Root", replies=[
        Message(id="m2", author=who, created_at=T0 + timedelta(minutes=1), text="Reply")])
    common = dict(platform="notion", workspace_id="ws-1", updated_at=T0)
    return [
        make_doc(1),
        make_doc(2, revision="rev-2"),
        Thread(entity_id="t-1", messages=[msg], **common),
        Thread(entity_id="t-2", messages=[msg], revision="etag-9", **common),
        Edit(entity_id="e-1", before="old", after="new", author=who, **common),
        Edit(entity_id="e-2", before=None, before_known=False, after="new", revision="v3", **common),
        Tombstone(entity_id="x-1", reason="trashed", **common),
    ]


@pytest.mark.parametrize("record", _records(), ids=lambda r: f"{r.kind}-{r.revision or 'hashed'}")
def test_every_record_kind_verifies_with_and_without_a_platform_revision(keyring, record):
    for ev in build_events(record, team_id="acme", connection_id="acme-notion", source=SRC):
        signed = keyring.sign(ev)
        verify_event(signed, trusted(keyring))
        verify_event(signed.to_dict(), trusted(keyring))
        assert id_problem(json.loads(signed.to_json())) is None


@pytest.mark.parametrize("revision", [None, "rev-7"])
def test_split_parts_verify_and_a_part_cannot_pose_as_another(keyring, revision):
    big = make_doc(3, text=" ".join(f"word{i}" for i in range(400)), revision=revision)
    parts = split_record(big, Limits(max_text_chars=500))
    assert len(parts) > 2
    events = [keyring.sign(e) for p in parts for e in build_events(p, team_id="acme", connection_id="c", source=SRC)]
    assert len({e.id for e in events}) == len(events)
    for ev in events:
        verify_event(ev, trusted(keyring))
    # part 2 presented under part 1's subject and id
    body = events[1].to_dict()
    body["subject"], body["id"] = events[0].subject, events[0].id
    assert reason_of(resigned(keyring, body), trusted(keyring)) == "id_mismatch"


def test_an_oversize_record_split_by_build_events_verifies(keyring):
    big = make_doc(4, text="x " * 600_000)  # over the 1,000,000 character limit: two parts
    events = [keyring.sign(e) for e in build_events(big, team_id="acme", connection_id="c", source=SRC)]
    assert len(events) == 2 and events[0].subject.endswith("#part-1-of-2")
    for ev in events:
        verify_event(ev, trusted(keyring))


# --- generated envelopes ----------------------------------------------------------------------------

_zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
_times = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=_zones)
_ids = st.text(min_size=1, max_size=24)
_texts = st.text(max_size=120)
_revisions = st.none() | st.text(min_size=1, max_size=20)
_common = dict(platform=st.sampled_from(["notion", "microsoft", "harvey", "x"]), workspace_id=_ids,
               entity_id=_ids, updated_at=_times, revision=_revisions,
               restricted=st.booleans(), visible_to=st.lists(_ids, max_size=3))
_messages = st.builds(Message, id=_ids, created_at=_times, text=_texts,
                      replies=st.lists(st.builds(Message, id=_ids, created_at=_times, text=_texts), max_size=2))
_records_st = st.one_of(
    st.builds(Document, title=_texts, text=_texts, properties=st.dictionaries(_ids, _texts, max_size=3), **_common),
    st.builds(Thread, messages=st.lists(_messages, min_size=1, max_size=3), **_common),
    st.builds(Edit, before=st.none() | _texts, after=_texts, **_common),
    st.builds(Tombstone, reason=st.sampled_from(["deleted", "trashed", "unshared", "out_of_scope"]), **_common),
)
_sources = st.sampled_from([SRC, "msgraph://tenant/t-1", "harvey://org/o-1"])
_hex_ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_prop = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_prop
@given(record=_records_st, source=_sources)
def test_generated_events_verify_and_their_id_is_derived_again_exactly(keyring, record, source):
    for ev in build_events(record, team_id="acme", connection_id="acme-c", source=source):
        body = json.loads(keyring.sign(ev).to_json())  # as another process receives it
        verify_event(body, trusted(keyring))
        assert body["id"] == event_id(source, EVENT_TYPES[record.kind], body["subject"],
                                      record_revision(record))


@st.composite
def _disagreeing(draw):
    """A validly built envelope, then one id input changed (or the id itself) and nothing else."""
    record = draw(_records_st)
    source = draw(_sources)
    body = build_events(record, team_id="acme", connection_id="acme-c", source=source)[0].to_dict()
    how = draw(st.sampled_from(["id", "subject", "source", "revision", "content"]))
    if how == "id":
        body["id"] = draw(_hex_ids.filter(lambda h: h != body["id"]))
    elif how == "subject":
        body["subject"] = draw(_ids.filter(lambda s: s != body["subject"]))
    elif how == "source":
        body["source"] = draw(st.sampled_from(["notion://workspace/other", "harvey://org/o-2"]))
    elif how == "revision":
        body["data"]["revision"] = draw(st.none() | _ids) if record.revision else draw(_ids)
        if body["data"]["revision"] == record.revision:
            body["data"]["revision"] = (record.revision or "") + "-changed"
    else:  # content: changes the id only where the id is a hash of the record
        body["data"]["revision"] = None
        body["data"]["entity_id"] = body["subject"]  # keep the subject consistent: only content moves
        body["data"]["updated_at"] = "1970-01-01T00:00:00Z"
    return body


@_prop
@given(body=_disagreeing())
def test_generated_envelopes_whose_id_and_content_disagree_are_refused(keyring, body):
    trust = trusted(keyring)
    signed = resigned(keyring, body)
    assert reason_of(signed, trust) == "id_mismatch"
    with pytest.raises(Rejection) as r:  # the HTTP ingest check
        check_envelope(json.dumps(signed), trust)
    assert r.value.reason == "id_mismatch"


# --- files, on SQLite and PostgreSQL ----------------------------------------------------------------


def _file_with_bad_ids(tmp_path, keyring):
    good = signed_events(keyring, 3)
    zeros = good[0].to_dict()
    zeros["id"] = "0" * 64
    moved = good[1].to_dict()
    moved["subject"] = "page-99"
    squat = signed_events(keyring, 1, start=7)[0].to_dict()
    squat["id"] = good[2].id
    lines = [good[0].to_dict(), resigned(keyring, zeros), good[1].to_dict(), resigned(keyring, moved),
             resigned(keyring, squat), good[2].to_dict()]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path, good


def test_verify_file_reports_each_bad_id_by_line(trusting_store, keyring, tmp_path):
    path, _ = _file_with_bad_ids(tmp_path, keyring)
    report = verify_file(path, trusting_store.trusted_keys(), store=trusting_store)
    assert [(r.line, r.reason) for r in report.rejected] == [(2, "id_mismatch"), (4, "id_mismatch"),
                                                            (5, "id_mismatch")]
    assert report.valid == 3


def test_import_stores_nothing_and_partial_stores_only_the_good_lines(trusting_store, keyring, tmp_path):
    path, good = _file_with_bad_ids(tmp_path, keyring)
    report = import_file(path, trusting_store)
    assert not report.ok and trusting_store.count("acme") == 0
    report = import_file(path, trusting_store, partial=True)
    assert {r.reason for r in report.rejected} == {"id_mismatch"}
    assert sorted(report.stored.accepted) == sorted(e.id for e in good)
    assert trusting_store.count("acme") == 3
    # the genuine event whose id a squatter tried to take is stored as itself
    assert trusting_store.get("acme", good[2].id).envelope["subject"] == good[2].subject


# --- the trainer's collect --------------------------------------------------------------------------


def test_collect_leaves_out_a_stored_event_whose_id_is_not_its_contents(store, keyring):
    """A store written by a path that did not check ids (an older version, or direct ``append``)
    still trains only on events that keep the rule: collect calls ``TrustedKeys.verify``."""
    from engram_sdk import parse_event
    from engram_training.dataset import collect

    store.trust(load_key_set(keyring.export_public()))
    good = signed_events(keyring, 2)
    body = signed_events(keyring, 1, start=5, text="A second copy under another id.")[0].to_dict()
    body["id"] = "0" * 64
    store.append(good + [parse_event(resigned(keyring, body))])
    assert store.count("acme") == 3
    out = collect(store, "acme")
    assert out.rejected == {"id_mismatch": 1}
    assert out.events_used == 2 and set(out.records) == {"page-0", "page-1"}
