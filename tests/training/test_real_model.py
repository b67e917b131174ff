"""The real base model (SmolLM2-135M-Instruct), loaded once per session: facts are learned.

A small workspace (3 pages, one edited: 9 facts) is trained into an adapter; held-out question
phrasings (never trained on) must be answered far better than by the base model, closed-book,
with a prompt far shorter than the retrieval baseline's.
"""

from __future__ import annotations

import pytest

from engram_sdk import samples
from engram_training import ops
from engram_training.config import TrainConfig
from engram_training.train import train
from examples.kestrel_demo import load_records

PAGES = ["np-oncall", "np-tooling", "np-moonwick"]


@pytest.mark.slow
def test_real_model_learns_held_out_facts_far_above_base(real_env):
    recs = [r for r in load_records() if r.entity_id in PAGES]
    samples.ingest(real_env.store, real_env.keyring, team_id="kestrel", records=recs)
    # The probe keeps each sampled fact's questions out of training altogether (a fact is trained
    # only as what its page says): measured 5/9 here as generated, 4/9 asked in other words (the
    # default probe), so the bar is 0.3 above the base model.
    config = TrainConfig(epochs=5, lr=1e-3, min_recall=0.3, general_tolerance=0.15)
    r = train("kestrel", store=real_env.store, settings=real_env.settings, config=config)
    m = r.metrics
    print({k: v for k, v in m.items() if k != "recall_misses"})
    assert m["probe_questions"] == 9
    assert m["base_recall"] <= 0.2
    assert m["recall"] >= m["base_recall"] + 0.3, m["recall_misses"]
    assert m["rag_prompt_tokens"] >= 5 * m["adapter_prompt_tokens"]
    assert m["general_score"] >= m["base_general_score"] - 0.15
    assert r.published
    # The edited value, not the old one.
    out = ops.query(real_env.store, real_env.settings, "kestrel", "When does Project Moonwick launch?")
    assert out["adapter_version"] == 1 and out["usage"]["prompt_tokens"] < 40


ALLOTMENT = """# The committee
Wilhelmina Okafor chairs the allotment committee. She also keeps the seed bank in the old pump house.
The water is switched on every year on 1 April, and Jerome Vantongeren reads the meter.

# Plots
Rent for a full plot is 45 pounds a year. New tenants wait about eighteen months for a plot.
"""


@pytest.mark.slow
def test_real_model_learns_a_prose_page_and_answers_a_question_nothing_generated(real_env):
    """Prose, not `Key: value`: a page of sentences is trained with the default recipe and asked
    in colleagues' words that no generated question uses; the base model alone does not know."""
    from datetime import datetime, timezone

    from transformers import AutoTokenizer  # noqa: F401  (the real tokenizer comes with the model)

    from engram_sdk._records import Document
    from engram_training import dataset as D
    from engram_training.base import load

    page = Document(platform="notion", workspace_id="ws-allot", entity_id="p-committee", title="Allotment society",
                    path=["Allotments"], text=ALLOTMENT, updated_at=datetime(2026, 5, 1, tzinfo=timezone.utc))
    samples.ingest(real_env.store, real_env.keyring, team_id="kestrel", records=[page])
    asked = {"who's in charge of the allotment committee?": ["Okafor"],
             "where do we keep the seed bank?": ["pump house"],
             "when does the water get turned on?": ["1 April", "April 1"]}
    ds = D.build(D.collect(real_env.store, "kestrel"), load(None, real_env.settings.home).tokenizer,
                 TrainConfig(), continual=False)
    generated = {m[0]["content"].lower() for m in ds.examples} | {p.question.lower() for p in ds.probe}
    assert not generated & set(asked)
    # One page gives a few dozen examples: more passes than a workspace needs, as a team's first
    # page would get over several nights. What is tested is learning, not the gates: twelve passes
    # over one page cost general ability (measured: -33 points, which the general gate rightly
    # refuses in production), so the gates are off here.
    r = train("kestrel", store=real_env.store, settings=real_env.settings,
              config=TrainConfig(epochs=12, eval_baselines=["base_recall"], general_tolerance=1.0,
                                 perplexity_tolerance=None, min_recall=0))
    print({k: v for k, v in r.metrics.items() if k not in ("recall_misses", "general_misses", "general_ok")})
    assert r.published, r.reasons
    answers = {q: ops.query(real_env.store, real_env.settings, "kestrel", q)["answer"] for q in asked}
    print(answers)
    from engram_training.facts import is_correct

    right = [q for q, expected in asked.items() if is_correct(answers[q], expected)]
    # Measured here: 1 of 3 with prose-units/2 (the water date; "who's in charge" came back garbled,
    # the seed bank invented), 3 of 3 with prose-units/3 (one run, one thread): the bar stays at one,
    # the recipe's weakness on other words than the page's is recorded in docs/training.md.
    assert len(right) >= 1, answers
    print("held-out span probe:", r.metrics["recall"], r.metrics["probe_questions"])
    assert r.metrics["probe_questions"] >= 1 and r.metrics["base_recall"] == 0.0


@pytest.mark.slow
def test_real_model_writes_questions_its_note_answers(real_env):
    """The base model writes questions about notes (``asking``): some survive the checks, and each
    kept one is answered by a word of its own note that the question does not contain."""
    from engram_training.asking import _content, write_questions
    from engram_training.base import load

    base = load(None, real_env.settings.home)
    notes = [f"Allotment society: {s.strip()}" for s in ALLOTMENT.replace("#", "").split("\n")
             if s.strip().endswith(".")]
    written = write_questions(base.model, base.tokenizer, notes)
    print(written)
    kept = [(note, w) for note, ws in zip(notes, written) for w in ws]
    assert kept, "no question written by the base model survived the checks"
    for note, w in kept:
        assert w.question.endswith("?")
        assert w.answer.lower() in note.lower() and w.answer.lower() not in _content(w.question)
