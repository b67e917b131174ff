"""``engram bench kl``: what the KL term to the base model (``kl_general``) costs per training step,
in one run on the real base model: the same batches trained without the term, with it from the
base model's whole distribution at every step (``kl_top_k=0``), and from its top k computed once
(``kl_top_k=k``, whose one-off cost is reported beside it).

The rows are the trainer's general replay rows (the base model's own answers, shipped), batched
as the trainer batches them, a third of the rows marked general as ``replay_general=0.5`` makes
it: what a step costs depends on the rows' lengths and on how many are general, not on what they
say. Each setting starts from a fresh LoRA and is timed after a few warm-up steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engram_sdk import Settings

from . import base as base_model
from .config import TrainConfig
from .infer import chat_ids
from .train import _batch, _general_replay, _kl_batch, _reference_top_k, _schedule, _step

WARMUP_STEPS = 3


def run(settings: Settings, *, steps: int = 24, top_k: int = 64, kl: float = 1.0, threads: int = 0,
        on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model

    say = on_step or (lambda _m: None)
    config = TrainConfig(threads=threads)
    base = base_model.load(settings.base_model, settings.cache_root)
    used_threads = base_model.set_threads(config.threads) if base.device == "cpu" else 0
    bf16 = config.bf16 and base_model.bf16_native(base.device)
    tok = base.tokenizer
    rows = [chat_ids(tok, m, config.max_len) for m in _general_replay(base, settings.cache_root, config)]
    if not rows:
        raise ValueError("the base model gave no general replay answers to train on")
    first_general = len(rows) - len(rows) // 3  # the last third general, as replay_general=0.5 makes it
    schedule, _ = _schedule(rows, config, epochs=max(1.0, (steps + WARMUP_STEPS) * config.batch_size / len(rows)))
    schedule = schedule[: steps + WARMUP_STEPS]
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")

    def timed(name: str, weight: float, k: int) -> dict[str, Any]:
        torch.manual_seed(config.seed)
        model = get_peft_model(base.model, lora)
        try:
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=config.lr)
            model.train()
            t_ref = time.perf_counter()
            reference = (_reference_top_k(model, rows[first_general:], k, tok.pad_token_id, base.device, bf16)
                         if weight and k else None)
            reference_seconds = time.perf_counter() - t_ref
            tokens, seconds = 0, 0.0
            for n, idx in enumerate(schedule):
                say(f"{name}: step {n + 1}/{len(schedule)}")
                ids, mask = _batch(rows, idx, tok.pad_token_id, base.device)
                flags, batch_reference = _kl_batch(idx, first_general, reference, weight, ids.device)
                t0 = time.perf_counter()
                _step(model, optimizer, params, ids, mask, bf16=bf16, general_rows=flags, kl=weight,
                      reference=batch_reference)
                if n >= WARMUP_STEPS:
                    seconds += time.perf_counter() - t0
                    tokens += int((mask >= 0).sum())
        finally:
            base.model = model.unload()
            base.model.eval()
        return {"seconds_per_step": round(seconds / steps, 4), "tokens_per_s": round(tokens / seconds, 1),
                "reference_seconds": round(reference_seconds, 2)}

    runs = {"no_kl": timed("no KL term", 0.0, 0), "exact": timed("KL, whole distribution", kl, 0),
            "top_k": timed(f"KL, top {top_k} once", kl, top_k)}
    per_step = {k: v["seconds_per_step"] for k, v in runs.items()}
    return {
        "runs": runs,
        "steps": steps,
        "batch_size": config.batch_size,
        "top_k": top_k,
        "kl_general": kl,
        "general_rows": len(rows) - first_general,
        "threads": used_threads,
        "precision": "bf16" if bf16 else "fp32",
        # the figures: a step's cost against the same step without the term
        "exact_step_ratio": round(per_step["exact"] / per_step["no_kl"], 3),
        "top_k_step_ratio": round(per_step["top_k"] / per_step["no_kl"], 3),
        # the one-off reference in steps without the term: what the top-k setting pays up front
        "top_k_reference_in_steps": round(runs["top_k"]["reference_seconds"] / per_step["no_kl"], 1),
    }
