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
from engram_sdk._cli import app
from engram_sdk._cli._common import run_app
from engram_training import base as base_model
from engram_training.config import TrainConfig
from engram_training.evaluate import replay_prompts
from engram_training.registry import Registry
from engram_training.train import TopK, _reference_top_k, _target_loss, replay_file_name, train
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


def _moved(tiny_model):
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_a_reference_computed_once_from_the_top_k_gives_the_kl_term_of_the_base_model(tiny_model):
    model = _moved(tiny_model)  # the adapter is not the base model: the reference must switch it off
    ids, mask = _batch()
    rows = [(ids[r][mask[r] >= 0].tolist(), mask[r][mask[r] >= 0].tolist()) for r in range(3)]
    general = torch.tensor([False, True, True])
    plain = _target_loss(model, ids, mask).item()
    full = _target_loss(model, ids, mask, general_rows=general, kl=1.0).item() - plain
    vocab = model.get_base_model().get_output_embeddings().weight.shape[0]

    def term(k: int) -> float:
        reference = _reference_top_k(model, rows[1:], k, pad=0, device="cpu", bf16=False, batch_size=1)
        assert [len(r.rest) for r in reference] == [int((m[1:] == 1).sum()) for m in mask[1:]]
        return _target_loss(model, ids, mask, general_rows=general, kl=1.0, reference=TopK.cat(reference)).item() - plain

    # every token but one, and the one left as "the rest": the whole distribution, the same term
    assert term(vocab) == pytest.approx(full, rel=1e-4)
    # fewer tokens: the KL between coarser outcomes, positive and never more than the full term
    few = term(3)
    assert 0 < few <= full + 1e-6
    assert few < term(40) <= full + 1e-6
    # batched references line up with one-row ones (padding is on the right)
    one = _reference_top_k(model, rows[1:], 5, pad=0, device="cpu", bf16=False, batch_size=1)
    two = _reference_top_k(model, rows[1:], 5, pad=0, device="cpu", bf16=False, batch_size=2)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a.ids, b.ids) and torch.allclose(a.logp, b.logp, atol=1e-5)
    loss = _target_loss(model, ids, mask, general_rows=general, kl=1.0, reference=TopK.cat(one))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None)


def _short_general_answers(team_env) -> None:
    """The random tiny model rarely ends an answer, so its own general answers would all be dropped
    as too long: give it short ones, so there are general rows for the term to act on."""
    base = base_model.load(team_env.settings.base_model, team_env.settings.cache_root)
    prompts = replay_prompts()
    cached = base_model.copy_dir(team_env.settings.cache_root, base.id) / replay_file_name(base.id.sha256, prompts)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text("".join(json.dumps([{"role": "user", "content": p}, {"role": "assistant", "content": "Yes."}])
                              + "\n" for p in prompts))


def test_the_kl_cost_benchmark_times_the_same_steps_with_and_without_the_term(team_env, capsys):
    _short_general_answers(team_env)
    code = run_app(app, ["bench", "kl", "--steps", "2", "--top-k", "8", "--threads", "1", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert set(result["runs"]) == {"no_kl", "exact", "top_k"} and result["steps"] == 2 and result["top_k"] == 8
    assert all(r["seconds_per_step"] > 0 and r["tokens_per_s"] > 0 for r in result["runs"].values())
    # only the top-k setting computes a reference up front, and the ratios are of the measured steps
    assert result["runs"]["top_k"]["reference_seconds"] > 0 == result["runs"]["exact"]["reference_seconds"]
    runs = result["runs"]
    assert result["exact_step_ratio"] == round(runs["exact"]["seconds_per_step"] / runs["no_kl"]["seconds_per_step"], 3)
    assert result["top_k_step_ratio"] == round(runs["top_k"]["seconds_per_step"] / runs["no_kl"]["seconds_per_step"], 3)
    assert result["general_rows"] > 0 and result["threads"] == 1


def test_training_with_the_kl_term_records_it_and_trains_other_weights(team_env):
    samples.ingest(team_env.store, team_env.keyring, team_id=team_env.team,
                   records=[r for r in load_records() if r.entity_id in ("np-charter", "np-oncall")])
    fast = dict(generation="facts", epochs=1, batch_size=8, min_recall=0.0, general_tolerance=1.0,
                perplexity_tolerance=None, checkpoint_every=1000, max_new_tokens=8, eval_batch_size=64,
                eval_baselines=[])
    off, on = TrainConfig(**fast), TrainConfig(**fast, kl_general=5.0)
    _short_general_answers(team_env)
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
    # the same term from the base model's top k, computed once: recorded, and another run
    top = TrainConfig(**fast, kl_general=5.0, kl_top_k=8)
    assert len({off.digest(), on.digest(), top.digest()}) == 3
    train(team_env.team, store=team_env.store, settings=team_env.settings, config=top, from_scratch=True)
    v3 = reg.get(team_env.team, 3)
    general_rows = v3.manifest["dataset"]["general_replay_examples"]
    assert v3.manifest["config"]["kl_top_k"] == 8 and v3.manifest["metrics"]["kl_reference_rows"] == general_rows
    assert v2.manifest["metrics"]["kl_reference_rows"] == 0  # the whole distribution: no reference made
    w3 = load_file(str(v3.path / "adapter_model.safetensors"))
    assert any(not torch.equal(w2[k], w3[k]) for k in w2) and any(not torch.equal(w1[k], w3[k]) for k in w1)


def test_a_negative_kl_weight_is_refused():
    with pytest.raises(ValueError, match="kl_general"):
        TrainConfig(kl_general=-0.1)
    with pytest.raises(ValueError, match="kl_top_k"):
        TrainConfig(kl_general=1.0, kl_top_k=-1)
    # off, the top-k setting does not change what is trained (nor the digest old versions resume by)
    assert TrainConfig(kl_top_k=64).digest() == TrainConfig().digest()
