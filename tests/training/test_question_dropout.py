"""``question_dropout``: later passes ask the team's questions with some words left out, a new
draw per pass, fixed by the seed."""

from __future__ import annotations

import random

import pytest

from engram_sdk import samples
from engram_training import train as T
from engram_training.config import TrainConfig
from examples.kestrel_demo import load_records

QUESTION = "When did the allotment committee last change the rent of plot twelve?"


def _ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": "On 1 April."}]


def test_words_are_dropped_from_the_question_only_and_the_question_word_stays():
    draws = [T._drop_words(_ask(QUESTION), random.Random(seed), 0.3) for seed in range(40)]
    questions = [d[0]["content"] for d in draws]
    assert all(d[1] == {"role": "assistant", "content": "On 1 April."} for d in draws)
    assert all(q.startswith("When ") and q.endswith("?") for q in questions)
    shorter = [q for q in questions if q != QUESTION]
    assert len(shorter) >= 20 and len(set(shorter)) >= 10  # a different question most draws
    words = QUESTION.rstrip("?").split()
    for q in shorter:  # what is left is the question's words, in order, at least three fifths of them
        left = q.rstrip("?").split()
        it = iter(words)
        assert all(w in it for w in left) and len(left) >= 0.6 * len(QUESTION.split())
    assert T._drop_words(_ask(QUESTION), random.Random(7), 0.3) == T._drop_words(_ask(QUESTION), random.Random(7), 0.3)


def test_short_questions_and_conversations_stay_whole():
    for seed in range(20):
        assert T._drop_words(_ask("Who is the registrar?"), random.Random(seed), 0.9)[0]["content"] == \
            "Who is the registrar?"
    thread = [*_ask(QUESTION), {"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Yes."}]
    assert all(T._drop_words(thread, random.Random(seed), 0.5) == thread for seed in range(20))


def test_each_pass_of_the_schedule_covers_every_row_once():
    config = TrainConfig(epochs=3)
    for n in (7, 64, 65, 600, 1003):
        rows = [([1] * (i % 13 + 1), [1]) for i in range(n)]
        schedule, per_pass = T._schedule(rows, config, 3)
        assert len(schedule) >= 2 * per_pass
        for k in range(2):
            assert sorted(i for batch in schedule[k * per_pass:(k + 1) * per_pass] for i in batch) == list(range(n))


def test_the_setting_is_validated_and_only_an_active_one_changes_the_digest():
    assert TrainConfig(question_dropout=0).digest() == TrainConfig().digest()
    assert TrainConfig(question_dropout=0.25).digest() != TrainConfig().digest()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="question_dropout"):
            TrainConfig(question_dropout=bad)


def test_training_with_dropped_words_is_deterministic_and_trains_other_rows(team_env):
    samples.ingest(team_env.store, team_env.keyring, team_id=team_env.team,
                   records=[r for r in load_records() if r.entity_id in ("np-charter", "np-moonwick")])
    fast = dict(epochs=3, min_recall=0.0, general_tolerance=1.0, max_new_tokens=8, eval_batch_size=64)
    runs = [T.train(team_env.team, store=team_env.store, settings=team_env.settings,
                    config=TrainConfig(**fast, question_dropout=p), from_scratch=True) for p in (0.0, 0.5, 0.5)]
    weights = [(r.version.path / "adapter_model.safetensors").read_bytes() for r in runs]
    assert weights[1] == weights[2]  # the draws are fixed by the seed: a resumed run sees the same rows
    assert weights[0] != weights[1]  # later passes asked other questions
