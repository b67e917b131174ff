"""Training questions in other words (``synonym_questions``): WordNet proposes, WordLlama checks
the meaning, the base model checks the English.

The texts are written for these tests (a made-up allotment society); none comes from an
evaluation workspace.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from engram_sdk._records import Document
from engram_training import dataset as D
from engram_training import synonyms as S
from engram_training.config import TrainConfig
from engram_training.nlp import parse

T = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
PAGE = """# Who does what
Wilhelmina Okafor owns the biggest greenhouse on the site.
Severin Dalloway repairs the water pumps every spring.
The committee meets in the pavilion on the first Monday of each month.
"""


def _words(doc, text: str):
    return next(t for t in doc if t.text == text)


def test_candidates_are_wordnet_synonyms_inflected_like_the_word():
    (doc,) = parse(["Who owns the biggest greenhouse on the site?"])
    owns = S.candidates(_words(doc, "owns"))
    assert {"has", "possesses"} <= set(owns)  # "own" -> "have", "possess", in the third person
    assert "largest" in S.candidates(_words(doc, "biggest"))  # a superlative stays one
    assert S.candidates(_words(doc, "Who")) == []
    (named,) = parse(["Does Wilhelmina Okafor chair the committee at 9:30 on 1 April?"])
    # names, numbers, dates and light verbs are never swapped
    for text in ("Wilhelmina", "Okafor", "9:30", "1", "April", "Does"):
        assert S.candidates(_words(named, text)) == [], text


def test_a_paraphrase_swaps_one_word_and_keeps_the_names_and_the_meaning():
    from engram_training.evaluate import _wordllama

    questions = ["Who owns the biggest greenhouse on the site?", "Who repairs the water pumps?",
                 "Who is Wilhelmina Okafor?"]
    out = S.paraphrase(questions)
    assert out == S.paraphrase(questions)  # deterministic: a resumed run builds the same dataset
    for q, p in zip(questions[:2], out[:2]):
        assert p is not None and p != q
        before, after = q.rstrip("?").split(), p.rstrip("?").split()
        assert sum(a != b for a, b in zip(before, after)) == 1 or abs(len(before) - len(after)) == 1, p
        assert float(_wordllama().similarity(q, p)) >= S.MIN_SIMILARITY
    assert "Who" in out[0] and "?" in out[0]
    assert out[2] is None  # nothing in it to swap: no paraphrase rather than a wrong one


def test_log_probs_in_batches_equal_one_at_a_time(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    texts = ["Who owns the greenhouse?", "Who has the biggest greenhouse on the whole site, then?", "Why?"]
    together = S._log_probs(model, tok, texts, batch_size=3, device="cpu")
    alone = [S._log_probs(model, tok, [t], batch_size=1, device="cpu")[0] for t in texts]
    assert together == pytest.approx(alone, abs=1e-3)  # padding does not leak into a row's score
    assert all(v < 0 for v in together)


def test_the_base_model_picks_the_swap_it_finds_most_likely(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    question = "Who repairs the water pumps every spring?"
    (doc,) = parse([question])
    swaps = S._swaps(doc)
    assert len(swaps) >= 2
    (picked,) = S.paraphrase([question], model=model, tokenizer=tok)
    assert picked in swaps
    scores = dict(zip(swaps, S._log_probs(model, tok, swaps, batch_size=8, device="cpu")))
    # the most likely of the swaps that keep the meaning
    from engram_training.evaluate import _wordllama

    close = [s for s in swaps if float(_wordllama().similarity(question, s)) >= S.MIN_SIMILARITY]
    assert scores[picked] == max(scores[s] for s in close)


def test_the_recipe_trains_the_paraphrases_with_the_statement_and_never_probes_them(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    doc = Document(entity_id="p-jobs", title="Society handbook", text=PAGE, platform="notion",
                   workspace_id="ws-allot", path=["Allotments"], updated_at=T)
    col = D.Collected(team_id="t", records={"p-jobs": doc})
    plain = D.build(col, tok, TrainConfig(), continual=False)
    swapped = D.build(col, tok, TrainConfig(synonym_questions=2), continual=False)
    before = {m[0]["content"]: m[1]["content"] for m in plain.examples}
    after = {m[0]["content"]: m[1]["content"] for m in swapped.examples}
    new = {q: a for q, a in after.items() if q not in before}
    assert new and set(before) <= set(after)
    statements = set(before.values())
    assert all(a in statements for a in new.values())  # answered with the unit's statement
    assert all(len(q.split()) >= 3 for q in new)
    # each paraphrase is a trained question with one word changed
    for q in new:
        assert any(abs(len(q.split()) - len(b.split())) <= 1 and
                   sum(x != y for x, y in zip(q.split(), b.split())) <= 2 for b in before), q
    assert not {p.question.lower() for p in swapped.probe} & {q.lower() for q in after}
    # off, the setting leaves a version's digest as it was
    assert TrainConfig(synonym_questions=0).digest() == TrainConfig().digest()
    assert TrainConfig(synonym_questions=1).digest() != TrainConfig().digest()
    with pytest.raises(ValueError, match="synonym_questions"):
        TrainConfig(synonym_questions=-1)


def test_the_probe_in_other_words_asks_the_same_held_out_spans_reworded(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    doc = Document(entity_id="p-jobs", title="Society handbook", text=PAGE + LONGER, platform="notion",
                   workspace_id="ws-allot", path=["Allotments"], updated_at=T)
    col = D.Collected(team_id="t", records={"p-jobs": doc})
    plain = D.build(col, tok, TrainConfig(probe_per_record=10, probe_in_other_words=False), continual=False)
    other = D.build(col, tok, TrainConfig(probe_per_record=10), continual=False)  # on by default
    assert plain.digest() == other.digest()  # the same examples: only what is asked differs
    assert len(plain.probe) == len(other.probe) >= 2
    assert [p.answers for p in plain.probe] == [p.answers for p in other.probe]
    changed = [(a.question, b.question) for a, b in zip(plain.probe, other.probe) if a.question != b.question]
    assert changed
    # the question as generated is kept beside it (the bench asks both ways), and only there
    assert all(b.generated == a.question for a, b in zip(plain.probe, other.probe) if a.question != b.question)
    assert all(b.generated is None for a, b in zip(plain.probe, other.probe) if a.question == b.question)
    assert all(p.generated is None for p in plain.probe)
    trained = {m[0]["content"].lower() for m in other.examples}
    assert not {p.question.lower() for p in other.probe} & trained
    assert TrainConfig(probe_in_other_words=False).digest() == TrainConfig().digest()


def test_a_continual_runs_retention_probe_is_reworded_as_the_first_versions_probe_was(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    old = Document(entity_id="p-jobs", title="Society handbook", text=PAGE + LONGER, platform="notion",
                   workspace_id="ws-allot", path=["Allotments"], updated_at=T)
    new = Document(entity_id="p-new", title="Notices", text="Ottoline Brackwater sells honey at the gate.",
                   platform="notion", workspace_id="ws-allot", path=["Allotments"], updated_at=T)
    cfg = TrainConfig(probe_per_record=10)
    first = D.build(D.Collected(team_id="t", records={"p-jobs": old}), tok, cfg, continual=False)
    update = D.build(D.Collected(team_id="t", records={"p-jobs": old, "p-new": new}, changed={"p-new"}), tok, cfg,
                     continual=True)
    assert update.old_probe and all(p.entity_id == "p-jobs" for p in update.old_probe)
    assert any(p.generated for p in update.old_probe)  # reworded, as the first version's probe was
    asked_first = {(p.generated or p.question): p.question for p in first.probe}
    both = [p for p in update.old_probe if (p.generated or p.question) in asked_first]
    assert any(p.generated for p in both)
    for p in both:  # the same unit's question is reworded the same way in both runs
        assert p.question == asked_first[p.generated or p.question]


LONGER = """
## Water
Severin Dalloway switches the water on every year on 1 April and drains the pipes in late October.
Ottoline Brackwater keeps the spare keys to the pump house in the blue tin by the shed.
The society bought a second rotavator from Harrow Garden Supplies in March 2025 for 310 pounds.
Jerome Vantongeren teaches the beginners' pruning class in the orchard every second Sunday.
The annual show takes place in the village hall on the last Saturday of August.
Wilhelmina Okafor orders the seed potatoes from a farm near Ludlow each January.
"""
