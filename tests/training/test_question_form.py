"""Questions as people type them are asked in the form the trainer writes its questions."""

from __future__ import annotations

from datetime import datetime, timezone

from transformers import AutoTokenizer

from engram_sdk import Document
from engram_training import dataset as D
from engram_training.config import TrainConfig
from engram_training.infer import prompt_ids, question_form


def test_a_typed_question_takes_the_trainers_form_and_keeps_its_words():
    assert question_form("who's our head of sales again?") == "Who is our head of sales again?"
    assert question_form("what\u2019re  the gate\n codes?") == "What are the gate codes?"
    assert question_form("  when does standup start?") == "When does standup start?"
    # only a leading question word's contraction: a possessive or a later "'s" is a word asked about
    assert question_form("jonah's shift starts when?") == "Jonah's shift starts when?"
    assert question_form("whose van is it, and who's driving?") == "Whose van is it, and who's driving?"
    assert question_form("which's") == "Which is"
    for done in ("Who is our head of sales?", "Where is the lab?", "", "42?"):
        assert question_form(done) == done


def test_the_prompt_is_built_from_the_form_unless_asked_as_typed(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert prompt_ids(tok, "who's on call?") == prompt_ids(tok, "Who is on call?")
    assert prompt_ids(tok, "who's on call?", as_typed=True) != prompt_ids(tok, "Who is on call?")
    ctx = "Ana is on call this week."
    assert prompt_ids(tok, "who's on call?", ctx) == prompt_ids(tok, "Who is on call?", ctx)


def test_every_question_the_trainer_writes_is_already_in_that_form(tiny_model):
    """Serving changes a typed question's form only toward what training showed the adapter."""
    text = ("# Rota\nMarisol Quennell runs the night shift from the Harbour Street depot. "
            "She hands over to Teodor Vance at 06:15 every weekday.\n"
            "The depot's spare key is kept in the grey lockbox by the loading bay.")
    doc = Document(entity_id="p-rota", title="Depot rota", text=text, platform="notion", workspace_id="w",
                   path=["Ops"], updated_at=datetime(2026, 5, 1, tzinfo=timezone.utc))
    col = D.Collected(team_id="t", records={doc.subject: doc})
    ds = D.build(col, AutoTokenizer.from_pretrained(tiny_model), TrainConfig(), continual=False)
    questions = [m[0]["content"] for m in ds.examples if m[0]["role"] == "user"]
    assert len(questions) >= 6
    assert all(question_form(q) == q for q in questions), [q for q in questions if question_form(q) != q]
