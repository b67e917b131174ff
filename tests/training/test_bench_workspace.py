"""`engram bench train` on a hand-written evaluation workspace, run on the tiny model: the figures
the issue names are all there, the baselines are measured in the same run, and no hand-written
question is ever a training question."""

from __future__ import annotations

import pytest

from engram_sdk import samples
from engram_training import dataset as D
from engram_training import facts as F
from engram_training import written as W
from engram_training.bench import WHOLE_CHUNK_TOKENS, _chunker, _contexts, _in_training, _misses, _trained_answers, run_workspace
from engram_training.evaluate import dense_contexts, retrieval_contexts
from engram_training.config import TrainConfig

KEYS = ("written_single_recall", "written_two_page_recall", "written_edit_new_value", "written_abstain_rate",
        "best_retrieval_recall", "best_retrieval_prompt_tokens", "adapter_prompt_tokens", "general_score",
        "base_general_score", "general_difference", "train_seconds", "first_version_seconds")


@pytest.mark.parametrize("settings", [{}, {"short_answers": True, "abstain_invented_share": 0.08},
                                      {"synonym_questions": 2}])
def test_hand_written_questions_are_never_trained_on(tiny_model, settings):
    from transformers import AutoTokenizer

    records = samples.load_records("tidewater")
    col = D.Collected(team_id="t", records={r.subject: r for r in records})
    ds = D.build(col, AutoTokenizer.from_pretrained(tiny_model), TrainConfig(**settings), continual=False)
    trained = {F.normalize(m[0]["content"]) for m in ds.examples} | {F.normalize(p.question) for p in ds.probe}
    asked = {F.normalize(q.question) for q in W.questions("tidewater")}
    assert len(asked) >= 80 and not trained & asked


def test_scoring_refuses_old_values_and_credits_only_real_abstention():
    q = W.Question("e", "edit", "when is standup?", ["9:45"], ["10:30"], [], "")
    assert W.correct(q, "Standup is at 9:45.")
    assert not W.correct(q, "It moved from 10:30 to 9:45.")
    u = W.Question("u", "unanswerable", "what is the wifi password?", [], [], [], "")
    assert W.correct(u, "I don't know; the notes don't say.") and not W.correct(u, "It is hunter2.")
    assert W.paired_difference([True, True, False], [True, False, False])["difference"] == pytest.approx(1 / 3, 1e-3)


def test_within_reach_counts_a_trained_answer_only_where_the_scorer_would_accept_it():
    q = W.Question("e", "single", "when is standup?", ["9:45"], ["10:30"], [], "")
    two = W.Question("t", "two_page", "who owns it?", ["Ana"], [], [], "")
    chat = [{"role": "user", "content": "When does standup start?"}, {"role": "assistant", "content": "Standup is at 9:45."}]
    both = [chat[0], {"role": "assistant", "content": "It moved from 10:30 to 9:45."}]
    assert _in_training([q, two], _trained_answers([chat])) == {"single": 1.0, "two_page": 0.0}
    assert _in_training([q], _trained_answers([both])) == {"single": 0.0}  # naming the old value too is wrong, as when asked
    assert _in_training([q], _trained_answers([[chat[1], chat[0]]])) == {"single": 0.0}  # a question is not an answer


def test_a_wrong_answer_is_told_apart_as_recited_made_up_or_dont_know():
    qs = [W.Question(str(k), "single", "where is the lab?", ["second floor"], [], [], "") for k in range(5)]
    qs.append(W.Question("u", "unanswerable", "what is the wifi password?", [], [], [], ""))
    trained = [[{"role": "user", "content": "Where is the store?"},
                {"role": "assistant", "content": "The store is on the ground floor of the old mill."}]]
    answers = ["The lab is on the second floor.", "The store is on the ground floor of the old mill.",
               "The lab is in the big room next to the kitchen.", "I don't know.", "Lab.", "It is hunter2."]
    assert _misses(qs, answers, _trained_answers(trained)) == {"recited": 1, "own_words": 2, "dont_know": 1}


def test_the_prose_recipe_puts_every_single_page_answer_of_the_development_workspace_within_reach(tiny_model):
    """Extraction is not what limits recall there: each single-page answer is in some trained
    answer, so a miss is the adapter not reciting it (docs/training.md)."""
    from transformers import AutoTokenizer

    records = samples.load_records("tidewater")
    col = D.Collected(team_id="t", records={r.subject: r for r in records})
    ds = D.build(col, AutoTokenizer.from_pretrained(tiny_model), TrainConfig(), continual=False)
    first, later = W.split_by_edits(W.questions("tidewater"), W.edits("tidewater"))
    assert later and all(q.kind == "edit" for q in later) and not any(q.kind == "edit" for q in first)
    reach = _in_training(first, _trained_answers(ds.examples))
    assert reach["single"] == 1.0 and 0 < reach["two_page"] <= 1


def test_bench_reports_every_figure_with_baselines_from_the_same_run(team_env, tmp_path):
    config = TrainConfig(epochs=1, max_examples=120, max_new_tokens=4, eval_baselines=[], min_recall=0,
                         general_tolerance=1, eval_batch_size=64)
    later = TrainConfig(**{**config.to_dict(), "lr": 5e-4, "continual_replay_per_example": 2})
    out = run_workspace(config, workspace="tidewater", continual=later)
    assert out["continual_config"]["lr"] == 5e-4 and out["config"]["lr"] == config.lr
    assert out["continual_config"]["continual_replay_per_example"] == 2
    for key in KEYS:
        assert key in out, key
    assert out["written_questions"]["single"] >= 20 and out["written_questions"]["unanswerable"] >= 10
    kinds = {(s["retriever"], s["chunk_tokens"], s["top_k"]) for s in out["retrieval_sweep"]}
    assert {("bm25", 128, 1), ("bm25", 256, 3), ("dense", 128, 1)} <= kinds
    assert all(r > 1 for r in out["prompt_token_ratios"].values())
    assert out["general_difference"]["n"] == 121 and out["update_examples"] is not None
    assert len(out["answers"]["edits"]) == len(W.edits("tidewater"))
    # the gate's probe both ways on the same adapter: the gate asked it in other words (the default)
    reworded = out["probe_in_other_words"]
    assert reworded["questions"] == out["generated_probe_questions"] > 0
    assert 0 < reworded["reworded"] <= reworded["questions"] and reworded["examples"]
    assert reworded["recall"] == out["generated_probe_recall"]
    assert all(q != a and len(q.split()) - 1 <= len(a.split()) for q, a in reworded["examples"])


def test_no_edits_measures_the_first_version_only(team_env):
    config = TrainConfig(epochs=1, max_examples=60, max_new_tokens=4, eval_baselines=[], min_recall=0,
                         general_tolerance=1, eval_batch_size=64)
    out = run_workspace(config, workspace="tidewater", baselines=False, edits=False)
    assert out["written_questions"]["single"] >= 20 and out["written_single_recall"] is not None
    assert out["written_edit_new_value"] is None and out["written_without_abstention"]["edit"] is None
    assert out["update_examples"] is None and out["update_seconds"] is None and out["answers"]["edits"] == []
    assert out["published"][1] is None and out["current_version"] == 1
    # the adapter file's size (a LoRA of rank 16 on the tiny model: some kilobytes, not the base model)
    assert 1_000 < out["adapter_bytes"] < 50_000_000
    # the share the same examples, rebuilt, put within reach (60 examples keep every unit's statement)
    assert 0 < out["written_in_training"]["single"] <= 1
    misses = out["written_misses"]
    answerable = out["written_questions"]["single"] + out["written_questions"]["two_page"]
    right = round(out["written_without_abstention"]["answerable"] * answerable)
    assert sum(misses.values()) == answerable - right


def test_every_retrieval_setting_of_the_sweep_gives_contexts_so_the_edits_baseline_can_reuse_the_best(tiny_model):
    """The edits' baseline asks the first version's best setting again: it was BM25 whatever won, and a
    whole-workspace winner had no chunk size to cut pages by."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    col = D.Collected(team_id="t", records={r.subject: r for r in samples.load_records("tidewater")})
    qs = W.questions("tidewater")[:3]
    chunker = _chunker(col, tok)
    whole = _contexts({"retriever": "whole", "chunk_tokens": None, "top_k": None}, chunker, qs)
    chunks = D.page_chunks(col, tok, WHOLE_CHUNK_TOKENS)
    assert len(whole) == 3 and len(set(whole)) == 1 and all(c["text"] in whole[0] for c in chunks)
    questions = [q.question for q in qs]
    for retriever, pick in (("bm25", retrieval_contexts), ("dense", dense_contexts)):
        got = _contexts({"retriever": retriever, "chunk_tokens": 128, "top_k": 2}, chunker, qs)
        assert got == pick(D.page_chunks(col, tok, 128), questions, top_k=2), retriever
    assert _contexts({"retriever": "dense", "chunk_tokens": 128, "top_k": 1}, chunker, qs) != \
        _contexts({"retriever": "bm25", "chunk_tokens": 128, "top_k": 1}, chunker, qs)
    assert chunker(128) is chunker(128)  # each size is cut once however many settings ask for it
