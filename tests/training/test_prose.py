"""The prose recipe: units from any content, questions on a parse, junk resistance, text edits.

The texts here are written for these tests (a made-up allotment society); none comes from an
evaluation workspace.
"""

from __future__ import annotations

from datetime import datetime, timezone

from transformers import AutoTokenizer

from engram_sdk import samples
from engram_sdk._records import Document, Edit, Message, Person, Thread
from engram_training import dataset as D
from engram_training import facts as F
from engram_training import questions as Q
from engram_training import units as U
from engram_training.config import TrainConfig
from engram_training.train import train

T = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
BASE = dict(platform="notion", workspace_id="ws-allot", path=["Allotments"], updated_at=T)

PAGE = """# Who does what
Wilhelmina Okafor chairs the allotment committee. She also keeps the seed bank in the old pump house.

The water is switched on every year on 1 April.
- Things to bring on a work day:
  - gloves and a trowel
- Compost bays are turned on the first Saturday of each month.

## Plots
| Plot | Holder | Rent |
| --- | --- | --- |
| 12 | Jerome Vantongeren | 45 pounds |
| 14 | Ottoline Brackwater | 38 pounds |
"""


def _doc(entity: str, text: str, title: str = "Society handbook", **kw) -> Document:
    return Document(entity_id=entity, title=title, text=text, **BASE, **kw)


def test_prose_lists_and_tables_become_units_with_their_context():
    units = U.document_units(_doc("p-handbook", PAGE))
    texts = [u.text for u in units]
    assert "Wilhelmina Okafor chairs the allotment committee." in texts
    assert "She also keeps the seed bank in the old pump house." in texts  # sentences are split
    by_text = {u.text: u for u in units}
    assert by_text["Wilhelmina Okafor chairs the allotment committee."].section == "Who does what"
    assert by_text["gloves and a trowel"].lead == "Things to bring on a work day:"
    cells = [u for u in units if u.kind == "cell"]
    assert {(c.fact.subject, c.fact.key, c.fact.value) for c in cells} >= {("12", "Holder", "Jerome Vantongeren"),
                                                                           ("14", "Rent", "38 pounds")}
    assert all(c.section == "Plots" for c in cells)


def test_pronouns_are_resolved_and_questions_ask_for_each_span():
    units = U.document_units(_doc("p-handbook", PAGE))
    gen = Q.generate(units, per_unit=4, seed=1)
    by_text = {u.text: g for u, g in zip(units, gen)}
    keeps = by_text["She also keeps the seed bank in the old pump house."]
    assert keeps.statement.startswith("Wilhelmina Okafor also keeps the seed bank")
    chairs = by_text["Wilhelmina Okafor chairs the allotment committee."]
    assert "Who chairs the allotment committee?" in chairs.train
    water = by_text["The water is switched on every year on 1 April."]
    assert any(q.startswith("When is the water switched on") for q in water.train), water.train
    # Probe forms are never training forms.
    trained = {q for g in gen for q in g.train}
    assert all(q not in trained for g in gen for q, _ in g.probe)
    assert not any(q.startswith(("Quick question:", "Sorry to bother you", "Any idea", "Could you tell me"))
                   for q in trained)


def test_thread_messages_know_their_author_and_what_they_answer():
    thread = Thread(entity_id="t-1", title="Shed keys", thread_type="channel_thread", **{**BASE, "platform": "microsoft"},
                    messages=[Message(id="m0", author=Person(id="u-a", name="Ada Quill"), created_at=T,
                                      text="Who has the spare shed key now?",
                                      replies=[Message(id="m1", author=Person(id="u-b", name="Bram Otieno"),
                                                       created_at=T, text="I have it until Friday.")])])
    units = U.thread_units(thread)
    reply = [u for u in units if u.author == "Bram Otieno"][0]
    assert reply.lead == "Who has the spare shed key now?"
    [stmt] = Q.resolve([reply])
    assert stmt == "Bram Otieno has it until Friday."  # "I" is the author, and the verb agrees


LOG = "\n".join(f"2026-04-{d:02d} 06:{m:02d} Pump house meter read, nothing to report." for d in range(1, 31)
                for m in (0, 20, 40)) + "\n2026-04-18 07:10 Pump house meter cracked by frost; Severin Dalloway ordered a new one."


def test_boilerplate_is_dropped_and_costs_no_more_than_a_paragraph(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    log = U.select(U.document_units(_doc("p-log", LOG, "Meter log")), max_units_per_record=60)
    assert [u.text for u in log.units] == [LOG.splitlines()[-1]]
    assert log.dropped["p-log"]["repeated"] == 90
    # the same page with its one line that says something: the ninety repeats must add nothing
    paragraph = _doc("p-para", LOG.splitlines()[-1], "Meter log")
    cfg = TrainConfig()
    sizes = {}
    for doc in (_doc("p-log", LOG, "Meter log"), paragraph):
        col = D.Collected(team_id="t", records={doc.entity_id: doc})
        ds = D.build(col, tok, cfg, continual=False)
        sizes[doc.entity_id] = sum(len(tok.encode(m[0]["content"] + m[1]["content"])) for m in ds.examples)
        assert ds.learned[doc.entity_id]["units"] >= 1
    assert sizes["p-log"] <= sizes["p-para"], sizes


def test_a_data_source_schema_is_not_trained():
    schema = _doc("ds-1", "Name: title\nStatus: select\nDue: date", "Tasks", doc_type="data_source",
                  properties={"Name": "title", "Status": "select", "Due": "date"})
    assert U.document_units(schema) == []


def test_changed_sentences_of_a_text_edit():
    before = "Rent is due in March. The gate code is 4412. Bring your own tools."
    after = "Rent is due in March. The gate code is 7730. Bring your own tools."
    assert U.changed_sentences(before, after) == [("The gate code is 4412.", "The gate code is 7730.")]


def _ingest(env, records):
    return env.store.append(samples.sign_records(records, env.keyring, team_id=env.team))


def test_text_edit_teaches_the_new_sentence_not_the_old_value(team_env):
    text = "# Site\nThe gate code is 4412 and it changes every spring.\nWilhelmina Okafor chairs the committee."
    doc = _doc("p-site", text, "Site notes")
    _ingest(team_env, [doc])
    cfg = TrainConfig(epochs=1, min_recall=0, general_tolerance=1, max_new_tokens=4, eval_baselines=[])
    first = train(team_env.team, store=team_env.store, settings=team_env.settings, config=cfg)
    assert first.version.manifest["generation"] == D.GENERATIONS["prose"]
    assert first.version.manifest["learned"]["p-site"]["units"] == 2
    assert any("4412" in m[-1]["content"] for m in first.examples)  # what it trained, returned
    new_text = text.replace("4412", "7730")
    edit = Edit(entity_id="p-site", field="text", before=text, after=new_text, title="Site notes",
                author=Person(id="u-w", name="Wilhelmina Okafor"), **{**BASE, "updated_at": T.replace(day=2)})
    _ingest(team_env, [edit, doc.model_copy(update={"text": new_text, "updated_at": T.replace(day=2)})])
    tok = AutoTokenizer.from_pretrained(team_env.settings.base_model)
    col = D.collect(team_env.store, team_env.team, since=first.version.manifest["watermark"])
    ds = D.build(col, tok, cfg, continual=True)
    answers = [m[1]["content"] for m in ds.examples]
    questions = [m[0]["content"] for m in ds.examples]
    # Asked normally, only the new value; "what changed" says both.
    plain = [a for q, a in zip(questions, answers) if not q.startswith(("What changed", "Is this still true"))]
    assert any("7730" in a for a in plain) and not any("4412" in a for a in plain)
    assert any("7730" in a and "4412" in a for a in answers)
    # The unchanged sentence of the edited page is replay, not new training.
    assert not any("chairs the committee" in a for a in answers)
    assert any("chairs the committee" in m[1]["content"] for m in ds.replay)
    # The update's probe asks about the edit, so the gate sees it.
    assert ds.probe and all("7730" in " ".join(p.answers) or p.entity_id == "p-site" for p in ds.probe)
    second = train(team_env.team, store=team_env.store, settings=team_env.settings, config=cfg)
    assert second.version.manifest["parent_version"] == 1 and second.metrics["recall"] is not None
    assert second.examples == ds.examples


def test_a_new_generation_rebuilds_the_adapter_from_current_content(team_env):
    _ingest(team_env, [_doc("p-handbook", "- Rent day: 1 April\n" + PAGE)])
    fast = dict(epochs=1, min_recall=0, general_tolerance=1, max_new_tokens=4, eval_baselines=[])
    old = train(team_env.team, store=team_env.store, settings=team_env.settings,
                config=TrainConfig(generation="facts", page_examples=True, **fast))
    assert old.published and old.version.manifest["generation"] == D.GENERATIONS["facts"]
    _ingest(team_env, [_doc("p-more", "Ottoline Brackwater runs the plant sale in June.", "Plant sale")])
    new = train(team_env.team, store=team_env.store, settings=team_env.settings, config=TrainConfig(**fast))
    m = new.version.manifest
    assert m["generation"] == D.GENERATIONS["prose"] and m["from_scratch"] and m["parent_version"] is None
    assert "rebuilt from current content" in m["rebuilt"]
    assert set(m["entities"]) == {"p-handbook", "p-more"}  # everything, not only what changed


def test_a_version_whose_changes_give_nothing_to_probe_is_not_published(team_env):
    from engram_training.train import gate

    reasons = gate({"recall": None, "general_score": 0.7, "base_general_score": 0.7}, TrainConfig(), None)
    assert reasons and "nothing to probe" in reasons[0]


def test_object_and_given_name_questions_when_switched_on(tiny_model):
    # Objects of verbs are most of what prose states: "maintains the greenhouse heaters",
    # "specialises in citrus grafting" (a common noun, with a word the tagger calls a name).
    text = "# Garden\nOctavian Rasmussen maintains the greenhouse heaters. He specialises in citrus grafting.\n"
    units = U.document_units(_doc("p-garden", text, "Garden"))
    off = {q for g in Q.generate(units, per_unit=8, seed=1) for q in g.train}
    assert "What does Octavian Rasmussen maintain?" not in off and "What does Octavian maintain?" not in off
    asked = {q: a for g in Q.generate(units, per_unit=8, seed=1, objects=True, given_names=True)
             for q, a in zip(g.train, g.train_answers)}
    assert asked["What does Octavian Rasmussen maintain?"] == "greenhouse heaters"
    assert asked["What does Octavian Rasmussen specialise in?"] == "citrus grafting"
    assert asked["Who specialises in citrus grafting?"] == "Octavian Rasmussen"
    # and asked the way a team names its members, by the given name alone
    assert asked["What does Octavian maintain?"] == "greenhouse heaters"
    # a noun that hangs on a noun is part of its clause's question, not asked for itself
    assert not any(a in ("the greenhouse", "greenhouse") for a in asked.values())
    # the settings reach the recipe
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.Collected(team_id="t", records={"p-garden": _doc("p-garden", text, "Garden")})
    on = TrainConfig(object_questions=True, given_name_questions=True, probe_holdout=False, questions_per_unit=8)
    trained = {m[0]["content"] for m in D.build(col, tok, on, continual=False).examples}
    assert {"What does Octavian Rasmussen specialise in?", "What does Octavian maintain?"} <= trained


def test_short_answers_put_the_span_asked_for_before_the_statement(tiny_model):
    units = U.document_units(_doc("p-handbook", PAGE))
    gen = Q.generate(units, per_unit=4, seed=1)
    assert all(len(g.train) == len(g.train_answers) for g in gen)
    chairs = {u.text: g for u, g in zip(units, gen)}["Wilhelmina Okafor chairs the allotment committee."]
    asked = dict(zip(chairs.train, chairs.train_answers))
    assert asked["Who chairs the allotment committee?"] == "Wilhelmina Okafor"
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.Collected(team_id="t", records={"p-handbook": _doc("p-handbook", PAGE)})
    # the hold-out would keep some of these questions out of training; it is not what is tested here
    plain = D.build(col, tok, TrainConfig(probe_holdout=False), continual=False)
    short = D.build(col, tok, TrainConfig(short_answers=True, probe_holdout=False), continual=False)
    said = {m[0]["content"]: m[1]["content"] for m in short.examples}
    answer = said["Who chairs the allotment committee?"]
    assert answer == "Wilhelmina Okafor. Wilhelmina Okafor chairs the allotment committee."
    assert F.is_correct(answer, ["Wilhelmina Okafor"])  # still scoreable: containment
    # A fact cell's questions lead with its value; a topic question keeps the statement alone.
    rent = [a for q, a in said.items() if "14" in q and "rent" in q.lower()]
    assert rent and all(a.startswith("38 pounds. ") for a in rent)
    assert len(short.examples) == len(plain.examples)  # the same questions, other answers


SAUNA = "# Facilities\nThe staff sauna is open on Fridays.\nOctavian Rasmussen looks after the lockers.\n"


def test_invented_abstention_asks_only_about_topics_the_team_never_mentions(tiny_model):
    from engram_training import invented as I

    tok = AutoTokenizer.from_pretrained(tiny_model)
    records = {"p-handbook": _doc("p-handbook", PAGE), "p-fac": _doc("p-fac", SAUNA, "Facilities")}
    col = D.Collected(team_id="t", records=records)
    off = D.build(col, tok, TrainConfig(), continual=False)
    on = D.build(col, tok, TrainConfig(abstain_invented_share=0.2), continual=False)
    extra = [m for m in on.examples if m not in off.examples]
    assert extra and all(m[1]["content"] in D.ABSTAIN for m in extra)
    team = [m for m in off.examples if m[1]["content"] not in D.ABSTAIN]
    assert len(extra) <= round(0.2 * len(team))  # bounded by the share
    # None asks about something the team wrote: a topic sharing a content word with any record
    # (the sauna, the lockers, Octavian Rasmussen) is never used.
    team_words = {w for r in records.values() for w in I._words(r.model_dump_json().replace("\\n", " "))}
    topics = [t for _, t in I.topics()]
    used = [t for t in topics if any(t in m[0]["content"] for m in extra)]
    assert used and not any(I.content_words(t) & team_words for t in used)
    assert not any(t in m[0]["content"] for m in extra
                   for t in ("the staff sauna", "the lockers", "Octavian Rasmussen"))
    # Several of the generator's forms: direct or embedded, topic, the team's own with a name swapped.
    assert any(m[0]["content"].startswith(("What do we know about", "Tell me about", "What does")) for m in extra)
    assert any(m[0]["content"].startswith(("Do you know", "Remind me", "I'm trying to remember", "Who ", "What ",
                                           "When ", "Where ", "How ")) for m in extra)


def test_absent_topics_match_singular_and_plural():
    from engram_training import invented as I

    cands = [("thing", "the lockers"), ("thing", "the beehives"), ("person", "Ignatius Varga")]
    assert I.absent(cands, ["Each locker has a key.", "Ask Varga."]) == [("thing", "the beehives")]


def test_a_pronoun_means_the_last_person_named_before_it_even_inside_one_item():
    # The item's "He" is the treasurer, not the chair named in the unit before it; "with him" is
    # the person, not the person's.
    text = ("# People\nWilhelmina Okafor chairs the committee.\n\n"
            "- Bartholomew Quince is the treasurer. He also keeps the key to the tool shed, and the shed's "
            "ledger lives with him.\n")
    gen = Q.generate(U.document_units(_doc("p-people", text, "Committee")), per_unit=3, seed=1)
    item = gen[1].statement
    assert item == ("Bartholomew Quince is the treasurer. Bartholomew Quince also keeps the key to the tool shed, "
                    "and the shed's ledger lives with Bartholomew Quince.")
    assert "Who is the treasurer?" in gen[1].train  # the short form a colleague asks comes first



def test_an_ordinal_is_asked_for_with_which_and_its_noun():
    gen = Q.generate(U.document_units(_doc("p-rooms", "The seed store is on the third floor of the old mill.",
                                           "Rooms")), per_unit=3, seed=1)
    assert "Which floor is the seed store on?" in gen[0].train
    assert "third" in gen[0].answers


def test_a_subordinate_clause_is_not_turned_into_a_question():
    gen = Q.generate(U.document_units(_doc("p-boiler", "The boiler trips when the flow temperature rises above "
                                                       "80 degrees.", "Boiler")), per_unit=3, seed=1)
    # "How much does the flow temperature when rise above?" was what turning the when-clause round gave
    assert gen[0].train and not any(" when rise" in q for q in gen[0].train)


def test_the_probe_asks_for_spans_that_no_training_example_asks_for(tiny_model):
    units = U.document_units(_doc("p-handbook", PAGE))
    gen = Q.generate(units, per_unit=4, seed=1, hold_out=lambda u: True)
    held = [(u, g) for u, g in zip(units, gen) if g.held]
    assert any(u.fact is None for u, _ in held) and any(u.fact is not None for u, _ in held)
    for u, g in held:
        (question, answer), = g.probe
        assert question not in g.train
        # no training question of the unit asks for the held span ...
        assert answer not in g.train_answers
        # ... while a sentence keeps questions whose answer is its statement, which holds the span
        assert g.train and (u.fact is not None or answer in g.statement)
    # Through the recipe: every probe question is untrained, and each answer is still trained
    # inside a statement.
    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.Collected(team_id="t", records={"p-handbook": _doc("p-handbook", PAGE)})
    ds = D.build(col, tok, TrainConfig(), continual=False)
    trained = {m[0]["content"].lower() for m in ds.examples}
    said = " ".join(m[1]["content"] for m in ds.examples)
    assert ds.probe and len(ds.probe) <= TrainConfig().probe_per_record
    for p in ds.probe:
        assert p.question.lower() not in trained
        assert not p.question.startswith(tuple(f.split("{")[0] for f in Q.PROBE_LEAD + Q.PROBE_EMBEDDED))
        assert p.answers[0] in said
    # The old probe, lead-ins on trained questions, is one setting away.
    lead = D.build(col, tok, TrainConfig(probe_holdout=False, probe_per_record=20), continual=False)
    assert any(p.question.startswith(("Quick question", "Sorry to bother", "Any idea", "Could you"))
               for p in lead.probe)
    # holding out changes what is trained (with enough forms per unit the count can stay the same)
    assert {m[0]["content"].lower() for m in lead.examples} != trained


def test_held_out_probe_respects_its_caps_and_is_the_same_on_every_build(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    cfg = TrainConfig(max_probe=2, probe_per_record=1)
    col = D.Collected(team_id="t", records={"p-handbook": _doc("p-handbook", PAGE),
                                            "p-sauna": _doc("p-sauna", SAUNA, "Staff room")})
    builds = [D.build(col, tok, cfg, continual=False) for _ in range(2)]
    probe = [(p.entity_id, p.question) for p in builds[0].probe]
    assert 1 <= len(probe) <= 2 and len({e for e, _ in probe}) == len(probe)
    assert probe == [(p.entity_id, p.question) for p in builds[1].probe]
    assert builds[0].examples == builds[1].examples
