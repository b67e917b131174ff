"""The KL term to the base model on general replay (issue 15, item 3: one of the forgetting controls
compared): zero while the adapter is the base model, positive once it moves, and used by training."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from engram_sdk import samples
from engram_training import base as base_model
from engram_training.config import TrainConfig
from engram_training.evaluate import replay_prompts
from engram_training.registry import Registry
from engram_training.train import _target_loss, replay_file_name, train
from examples.kestrel_demo import load_records


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (3, 12))
    mask = torch.zeros(3, 12, dtype=torch.long)
    mask[:, 6:] = 1  # the last six tokens of each row are the answer
    mask[2, 10:] = -1  # the third row is shorter (padding)
    return ids, mask


def test_the_kl_term_is_zero_at_the_base_model_and_grows_as_the_adapter_moves(tiny_model):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    ids, mask = _batch()
    general = torch.tensor([False, True, True])
    plain = _target_loss(model, ids, mask).item()
    # LoRA starts as the identity (B = 0): the adapter is the base model, the term is 0
    assert _target_loss(model, ids, mask, general_rows=general, kl=1.0).item() == pytest.approx(plain, abs=1e-5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    plain = _target_loss(model, ids, mask).item()
    with_kl = _target_loss(model, ids, mask, general_rows=general, kl=1.0)
    assert with_kl.item() > plain + 1e-3
    # twice the weight, twice the term; no general row, no term
    twice = _target_loss(model, ids, mask, general_rows=general, kl=2.0).item()
    assert twice - plain == pytest.approx(2 * (with_kl.item() - plain), rel=1e-3)
    none = torch.tensor([False, False, False])
    assert _target_loss(model, ids, mask, general_rows=none, kl=1.0).item() == pytest.approx(plain, abs=1e-6)
    with_kl.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)


def test_training_with_the_kl_term_records_it_and_trains_other_weights(team_env):
    samples.ingest(team_env.store, team_env.keyring, team_id=team_env.team,
                   records=[r for r in load_records() if r.entity_id in ("np-charter", "np-oncall")])
    fast = dict(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0,
                perplexity_tolerance=None, checkpoint_every=1000, max_new_tokens=8, eval_batch_size=64,
                eval_baselines=[])
    off, on = TrainConfig(**fast), TrainConfig(**fast, kl_general=5.0)
    # The random tiny model rarely ends an answer, so its own general answers would all be dropped
    # as too long: give it short ones, so there are general rows for the term to act on.
    base = base_model.load(team_env.settings.base_model, team_env.settings.cache_root)
    prompts = replay_prompts()
    cached = base_model.copy_dir(team_env.settings.cache_root, base.id) / replay_file_name(base.id.sha256, prompts)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text("".join(json.dumps([{"role": "user", "content": p}, {"role": "assistant", "content": "Yes."}])
                              + "\n" for p in prompts))
    assert off.digest() != on.digest()
    train(team_env.team, store=team_env.store, settings=team_env.settings, config=off)
    train(team_env.team, store=team_env.store, settings=team_env.settings, config=on, from_scratch=True)
    reg = Registry(team_env.store, team_env.settings.adapters_dir)
    v1, v2 = reg.get(team_env.team, 1), reg.get(team_env.team, 2)
    assert v1.manifest["config"]["kl_general"] == 0.0 and v2.manifest["config"]["kl_general"] == 5.0
    assert v1.manifest["dataset"]["general_replay_examples"] == v2.manifest["dataset"]["general_replay_examples"] > 0
    w1, w2 = (load_file(str(v.path / "adapter_model.safetensors")) for v in (v1, v2))
    assert w1.keys() == w2.keys()
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)  # same data, seed and batches: only the term differs


def test_a_negative_kl_weight_is_refused():
    with pytest.raises(ValueError, match="kl_general"):
        TrainConfig(kl_general=-0.1)
