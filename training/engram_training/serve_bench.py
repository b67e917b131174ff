"""``engram bench serve``: queries/s and latency with 1, 8 and 32 team adapters in rotation, and the
base model alone, in one run on the real base model.

The adapters are LoRA adapters in the standard PEFT layout (rank 16, all linear projections, the
trainer's defaults) with random weights, registered like trained ones: serving cost depends on
their shape, not on what they learned, and 32 trained adapters would take hours here. Every query
asks for exactly ``max_tokens`` tokens (end token ignored), so the configurations do equal work.
Queries go through ``AdapterPool``, the engine the server answers with; HTTP adds a constant
few milliseconds on loopback.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from engram_sdk import EventStore, Settings

from . import base as base_model
from .config import TrainConfig
from .infer import Engine, prompt_ids
from .pool import AdapterPool, _generate
from .registry import Registry

QUESTION = "Who approves vendor contracts over ten thousand euros, and by when?"


def _stats(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"qps": round(len(latencies) / wall, 3), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(p95 * 1000, 1)}


def _timed(n: int, ask: Callable[[int], Any]) -> dict[str, float]:
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        ask(i)
        latencies.append(time.perf_counter() - t0)
    return _stats(latencies, time.perf_counter() - start)


def _make_adapters(base: base_model.BaseModel, registry: Registry, teams: list[str], work: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    cfg = TrainConfig()
    peft_model = get_peft_model(base.model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha,
                                                       target_modules=cfg.target_modules, lora_dropout=0.0))
    gen = torch.Generator().manual_seed(0)
    manifest_base = {"name": base.id.name, "sha256": base.id.sha256, "package": base.id.package,
                     "package_version": base.id.package_version}
    for team in teams:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:  # B starts at zero in a fresh LoRA; give each team its own update
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        out = work / team
        peft_model.save_pretrained(str(out))
        registry.add(team, out, {"base_model": manifest_base, "benchmark": "random weights"}, publish=True)
    base.model = peft_model.unload()
    base.model.eval()


def run(settings: Settings, *, queries: int = 32, max_tokens: int = 32, capacity: int = 8,
        on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = on_step or (lambda _: None)
    say("loading the base model")
    base = base_model.load(settings.base_model, settings.cache_root)
    tok = base.tokenizer
    prompt = prompt_ids(tok, QUESTION)

    def base_query(_: int) -> None:
        for _item in _generate(base.model, tok, prompt, max_tokens=max_tokens, temperature=0.0, stop=[],
                               device=base.device, seed=None, ignore_eos=True):
            pass

    base_query(0)  # warm-up
    say("base model alone")
    result: dict[str, Any] = {"queries": queries, "max_tokens": max_tokens, "adapter_cache": capacity,
                              "base": _timed(queries, base_query)}
    result["base_qps"] = result["base"]["qps"]
    with tempfile.TemporaryDirectory(prefix="engram-bench-serve-") as tmp:
        store = EventStore.open(f"sqlite:///{tmp}/bench.db")
        registry = Registry(store, Path(tmp) / "adapters")
        teams = [f"team-{i:02d}" for i in range(32)]
        say("creating 32 team adapters")
        _make_adapters(base, registry, teams, Path(tmp) / "work")
        pool = AdapterPool(Engine(base), registry, capacity=capacity)
        # A team's first answer with the model warm and its adapter not loaded yet (the first
        # question after a deploy or a new version): first streamed piece, and the whole answer.
        say("a team's first answer, its adapter not loaded yet")
        t0 = time.perf_counter()
        first = None
        for item in pool.stream(teams[-1], QUESTION, max_tokens=max_tokens, ignore_eos=True):
            if first is None and isinstance(item, str) and item:
                first = time.perf_counter() - t0
        result["cold_adapter_first_token_s"] = round(first or 0.0, 3)
        result["cold_adapter_answer_s"] = round(time.perf_counter() - t0, 3)
        result["adapters"] = {}
        for k in (1, 8, 32):
            rotation = teams[:k]
            # Warm the cache as a running server would be: with the rotation's last adapters, so the
            # measured pass is the LRU's steady state (all hits if k fits, all misses if not).
            for team in rotation[-min(k, capacity):]:
                pool.complete(team, QUESTION, max_tokens=1)
            hits, misses = pool.hits, pool.misses
            n = max(queries, k)  # every adapter in the rotation is asked at least once
            say(f"{k} adapter(s) in rotation, {n} queries")
            stats = _timed(n, lambda i: pool.complete(rotation[i % k], QUESTION, max_tokens=max_tokens,
                                                      ignore_eos=True))
            stats["cache_misses"] = pool.misses - misses
            stats["cache_hits"] = pool.hits - hits
            result["adapters"][str(k)] = stats
        pool.engine.close()
        store.close()
    one, eight = result["adapters"]["1"]["qps"], result["adapters"]["8"]["qps"]
    result["rotation_8_vs_1"] = round(eight / one, 3) if one else None
    return result
