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

PAGES = ["np-oncall", "np-tooling", "np-moonwick"]


@pytest.mark.slow
def test_real_model_learns_held_out_facts_far_above_base(real_env):
    recs = [r for r in samples.load_records() if r.entity_id in PAGES]
    samples.ingest(real_env.store, real_env.keyring, team_id="kestrel", records=recs)
    config = TrainConfig(epochs=5, lr=1e-3, min_recall=0.5, general_tolerance=0.15)
    r = train("kestrel", store=real_env.store, settings=real_env.settings, config=config)
    m = r.metrics
    print({k: v for k, v in m.items() if k != "recall_misses"})
    assert m["probe_questions"] == 9
    assert m["base_recall"] <= 0.2
    assert m["recall"] >= m["base_recall"] + 0.5, m["recall_misses"]
    assert m["rag_prompt_tokens"] >= 5 * m["adapter_prompt_tokens"]
    assert m["general_score"] >= m["base_general_score"] - 0.15
    assert r.published
    # The edited value, not the old one.
    out = ops.query(real_env.store, real_env.settings, "kestrel", "When does Project Moonwick launch?")
    assert out["adapter_version"] == 1 and out["usage"]["prompt_tokens"] < 40
