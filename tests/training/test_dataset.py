"""What goes into a team's dataset: verified, team-scoped, visible, not deleted."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from engram_sdk import samples
from engram_sdk._events import build_events, parse_event
from engram_sdk._records import Document, Tombstone
from engram_sdk._signing import Keyring, load_key_set
from engram_training import dataset as D
from engram_training import facts as F
from engram_training.config import TrainConfig
from examples.kestrel_demo import load_records

T = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _doc(eid: str, title: str, text: str, **kw) -> Document:
    return Document(platform="notion", workspace_id="ws-x", entity_id=eid, title=title, text=text, updated_at=T, **kw)


def _texts(ds: D.Dataset) -> str:
    return json.dumps(ds.examples + ds.replay) + json.dumps([p.to_dict() for p in ds.probe])


def _signed(env, record, team="kestrel"):
    return [env.keyring.sign(e) for e in build_events(record, team_id=team, connection_id="c1",
                                                      source="notion://workspace/ws-x")]


def test_tampered_event_is_counted_and_never_used(team_env, tiny_model):
    good = _signed(team_env, _doc("p-good", "Good Page", "- Owner: Alma Ruiz\n"))
    bad = _signed(team_env, _doc("p-bad", "Bad Page", "- Owner: Bruno Tell\n"))[0].to_dict()
    bad["data"]["text"] = "- Owner: Mallory Evil\n"  # changed after signing
    team_env.store.append(good + [parse_event(bad)])
    col = D.collect(team_env.store, "kestrel")
    assert col.rejected == {"bad_signature": 1}
    assert set(col.records) == {"p-good"}
    from transformers import AutoTokenizer

    ds = D.build(col, AutoTokenizer.from_pretrained(tiny_model), TrainConfig(), continual=False)
    assert "Mallory" not in _texts(ds) and "Bruno" not in _texts(ds)
    assert "Alma Ruiz" in _texts(ds)


def test_key_trusted_only_for_another_team_is_rejected(team_env, tmp_path):
    other = Keyring(tmp_path / "other-keys")
    other.generate(["heron"])  # this key may sign for team heron only
    team_env.store.trust(load_key_set(other.export_public()))
    forged = [other.sign(e) for e in build_events(_doc("p-forged", "Forged", "- Owner: Eve\n"), team_id="kestrel",
                                                  connection_id="c1", source="notion://workspace/ws-x")]
    team_env.store.append(forged + _signed(team_env, _doc("p-ok", "Ok", "- Owner: Alma\n")))
    col = D.collect(team_env.store, "kestrel")
    assert col.rejected == {"untrusted_for_team": 1}
    assert set(col.records) == {"p-ok"}


def test_team_a_events_never_in_team_b_dataset(team_env, tiny_model):
    from transformers import AutoTokenizer

    team_env.keyring.rotate(["kestrel", "heron"])
    team_env.store.trust(load_key_set(team_env.keyring.export_public()))
    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel", records=load_records())
    team_env.store.append(_signed(team_env, _doc("h-1", "Heron Notes", "- Gateway: Wrenpay\n"), team="heron"))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    heron = D.build(D.collect(team_env.store, "heron"), tok, TrainConfig(), continual=False)
    kestrel = D.build(D.collect(team_env.store, "kestrel"), tok, TrainConfig(), continual=False)
    assert heron.entities == ["h-1"]
    assert "Wrenpay" in _texts(heron) and "Stormgauge" not in _texts(heron) and "Moonwick" not in _texts(heron)
    assert "Wrenpay" not in _texts(kestrel) and "Stormgauge" in _texts(kestrel)


def test_restricted_record_left_out_unless_allowed(team_env, tiny_model):
    from transformers import AutoTokenizer

    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel", records=load_records())
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.collect(team_env.store, "kestrel")
    assert col.restricted_skipped == 1 and "np-comp" not in col.records
    ds = D.build(col, tok, TrainConfig(), continual=False)
    assert "98,000" not in _texts(ds) and "Compensation" not in _texts(ds)
    allowed = D.build(D.collect(team_env.store, "kestrel", allow_restricted=True), tok, TrainConfig(), continual=False)
    assert "98,000" in _texts(allowed)


def test_record_restricted_later_is_removed(team_env):
    team_env.store.append(_signed(team_env, _doc("p-1", "Plan", "- Budget: 10 euros\n")))
    later = _doc("p-1", "Plan", "- Budget: 99 euros\n", restricted=True, visible_to=["u-1"], revision="r2")
    team_env.store.append(_signed(team_env, later))
    col = D.collect(team_env.store, "kestrel")
    assert "p-1" not in col.records


def test_tombstone_removes_entity_and_upsert_brings_it_back(team_env):
    team_env.store.append(_signed(team_env, _doc("p-1", "Plan", "- Budget: 10 euros\n")))
    gone = Tombstone(platform="notion", workspace_id="ws-x", entity_id="p-1", updated_at=T)
    team_env.store.append(_signed(team_env, gone))
    col = D.collect(team_env.store, "kestrel")
    assert col.records == {} and col.deleted == {"p-1"}
    team_env.store.append(_signed(team_env, _doc("p-1", "Plan", "- Budget: 12 euros\n", revision="r3")))
    col = D.collect(team_env.store, "kestrel")
    assert set(col.records) == {"p-1"} and col.deleted == set()


def test_sample_workspace_facts_and_edits(team_env):
    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel", records=load_records())
    col = D.collect(team_env.store, "kestrel")
    facts = {f.ident: f for f in D.current_facts(col)}
    assert 55 <= len(facts) <= 70
    # Edits win over the page's old value, and remember it.
    launch = facts["np-moonwick::launch date"]
    assert (launch.value, launch.previous) == ("21 March 2027", "14 March 2027")
    assert facts["hv-row-nimbusfold::notice period"].value == "120 days"
    assert facts["tm-weekend::weekend on-call"].value == "Ravi Okonkwo"
    assert len(load_records()) >= 30


def test_holdout_questions_are_never_trained(team_env, tiny_model):
    from transformers import AutoTokenizer

    samples.ingest(team_env.store, team_env.keyring, team_id="kestrel", records=load_records())
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.collect(team_env.store, "kestrel")
    ds = D.build(col, tok, TrainConfig(generation="facts"), continual=False)
    trained = {m[0]["content"] for m in ds.examples}
    assert ds.probe and not any(p.question in trained for p in ds.probe)
    assert len(ds.probe) == len(ds.facts)
    prose = D.build(col, tok, TrainConfig(), continual=False)
    trained = {m[0]["content"] for m in prose.examples}
    assert prose.probe and not any(p.question in trained for p in prose.probe)


def test_scoring_rule():
    assert F.is_correct("The budget is 48,000 euros.", ["48,000 euros"])
    assert F.is_correct("Zürich!", ["zurich"])
    assert not F.is_correct("10 days", ["0"])
    assert not F.is_correct("Porto Alegre", ["Portoa"])


def test_prose_without_facts_still_becomes_page_examples(team_env, tiny_model):
    from transformers import AutoTokenizer

    prose = "The team meets on the pier every spring to plan the season and count the herons."
    team_env.store.append(_signed(team_env, _doc("p-facts", "Plan", "- Budget: 10 euros\nSome context.\n")))
    team_env.store.append(_signed(team_env, _doc("p-prose", "Spring", prose)))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.collect(team_env.store, "kestrel")
    by_default = D.build(col, tok, TrainConfig(generation="facts"), continual=False)
    asked = [m[0]["content"] for m in by_default.examples]
    # the page with a fact is taught through its fact; the prose page, which has none, as a chunk
    assert any("Spring" in q and "say" in q for q in asked) and prose in _texts(by_default)
    assert not any("Plan" in q and "say" in q for q in asked)
    with_pages = D.build(col, tok, TrainConfig(generation="facts", page_examples=True), continual=False)
    assert any("Plan" in q and "say" in q for q in [m[0]["content"] for m in with_pages.examples])
