"""Knowing what it doesn't know: the answer's own confidence, a threshold calibrated at training
time on questions about topics the team never wrote about, and "I don't know" under it."""

from __future__ import annotations

import json

import pytest
import torch

from engram_sdk import samples
from engram_training import base as base_model
from engram_training.config import TrainConfig
from engram_training.evaluate import calibrate_abstention
from engram_training.infer import DONT_KNOW, Engine, prompt_ids
from engram_training.train import train
from examples.kestrel_demo import load_records


def test_the_threshold_separates_right_answers_from_unknown_topics_and_leans_low():
    # well apart: every threshold between the two groups is as good; the lowest is taken, so a
    # right answer to a question asked in other words (less sure than the probe) is refused rarely
    cal = calibrate_abstention([-0.1, -0.2, -0.3], [-1.5, -1.2])
    assert -1.2 < cal["threshold"] < -1.19 and cal["known_kept"] == 1.0 and cal["unknown_refused"] == 1.0
    # overlapping: the best trade (J = 4/5 + 4/4 - 1 beats keeping all five at 3/4 refused)
    cal = calibrate_abstention([-0.05, -0.1, -0.2, -0.3, -0.9], [-1.5, -1.2, -1.1, -0.8])
    assert -0.8 < cal["threshold"] < -0.79 and cal["known_kept"] == 0.8 and cal["unknown_refused"] == 1.0
    # unknown topics answered as surely as known ones: no threshold, the adapter never abstains
    assert calibrate_abstention([-0.1, -0.3, -0.5, -0.7, -0.9], [-0.05, -0.2, -0.4, -0.6, -0.8])["threshold"] is None
    assert calibrate_abstention([], [-1.0])["threshold"] is None
    assert calibrate_abstention([-0.1], [])["threshold"] is None


@pytest.fixture(scope="module")
def tiny_engine(tiny_model, tmp_path_factory):
    base = base_model.load(str(tiny_model), tmp_path_factory.mktemp("cache"))
    with Engine(base) as engine:
        yield engine


def test_confidence_is_the_mean_log_probability_of_the_answer_tokens(tiny_engine):
    tok = tiny_engine.base.tokenizer
    a = tiny_engine.answer_many(["Who runs the tool shed?"], max_new_tokens=6, confidence=True)[0]
    prompt = prompt_ids(tok, "Who runs the tool shed?")
    # recompute by one forward pass over prompt + answer: the greedy tokens' log-probabilities
    out = tiny_engine.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False,
                                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = out[0, len(prompt):].tolist()
    with torch.no_grad():
        logits = tiny_engine.model(input_ids=out).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    n = new.index(tok.eos_token_id) + 1 if tok.eos_token_id in new else len(new)
    manual = sum(float(lp[len(prompt) - 1 + k, new[k]]) for k in range(n)) / n
    assert a.confidence == pytest.approx(manual, abs=1e-3)
    assert a.completion_tokens == (n - 1 if tok.eos_token_id in new else n)


def test_an_answer_below_the_threshold_is_i_dont_know(tiny_engine):
    q = ["Who runs the tool shed?", "When does the gate open?"]
    plain = tiny_engine.answer_many(q, max_new_tokens=6, confidence=True)
    top = max(a.confidence for a in plain)
    held = tiny_engine.answer_many(q, max_new_tokens=6, abstain_below=top)  # the best one passes
    assert [a.abstained for a in held] == [a.confidence < top for a in plain]
    assert all(a.text == DONT_KNOW for a in held if a.abstained)
    assert any(not a.abstained and a.text == p.text for a, p in zip(held, plain))


def test_a_prose_version_records_its_threshold_and_calibration(team_env):
    recs = [r for r in load_records() if r.entity_id in ("np-charter", "np-moonwick")]
    samples.ingest(team_env.store, team_env.keyring, team_id=team_env.team, records=recs)
    r = train(team_env.team, store=team_env.store, settings=team_env.settings,
              config=TrainConfig(epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0, max_new_tokens=8,
                                 eval_batch_size=64, abstain_calibration_questions=12))
    cal = r.metrics["abstain_calibration"]
    assert cal["unknown"] == 12 and cal["known"] <= r.metrics["probe_questions"]
    assert "abstain_below" in r.metrics and "recall_with_abstention" in cal
    m = json.loads((r.version.path / "manifest.json").read_text())
    assert m["metrics"]["abstain_calibration"]["unknown"] == 12


def test_a_version_trained_to_abstain_says_so_when_served(team_env, tmp_path):
    import shutil

    from engram_training import ops
    from engram_training.pool import AdapterPool, Completion
    from engram_training.registry import Registry

    recs = [r for r in load_records() if r.entity_id in ("np-charter", "np-moonwick")]
    samples.ingest(team_env.store, team_env.keyring, team_id=team_env.team, records=recs)
    v1 = train(team_env.team, store=team_env.store, settings=team_env.settings,
               config=TrainConfig(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0,
                                  max_new_tokens=8, eval_batch_size=64)).version
    registry = Registry(team_env.store, team_env.settings.adapters_dir)
    q = "What is the launch date of Project Moonwick?"

    def publish(threshold: float) -> None:
        copy = tmp_path / f"copy{threshold}"
        shutil.copytree(v1.path, copy)
        m = {**v1.manifest, "config": {**v1.manifest["config"], "abstain_by_confidence": True},
             "metrics": {**v1.manifest["metrics"], "abstain_below": threshold}}
        registry.add(team_env.team, copy, m, publish=True)

    publish(0.0)  # above any mean log-probability: every answer is refused
    out = ops.query(team_env.store, team_env.settings, team_env.team, q, max_new_tokens=6)
    assert out["abstained"] and out["answer"] == DONT_KNOW
    base = base_model.load(team_env.settings.base_model, team_env.settings.cache_root)
    with Engine(base) as engine:
        pool = AdapterPool(engine, registry)
        items = list(pool.stream(team_env.team, q, max_tokens=6))
        assert items[0] == DONT_KNOW and isinstance(items[-1], Completion) and items[-1].abstained
        publish(-1e9)  # below any: the answer as generated, sent whole
        items = list(pool.stream(team_env.team, q, max_tokens=6))
        done = items[-1]
        assert not done.abstained and done.adapter_version == 3 and "".join(items[:-1]) == done.text
