"""``engram bench train``: the shipped Kestrel workspace (~30 records, ~60 facts) through the whole
trainer in a scratch ENGRAM_HOME, as a script you run (like nanoGPT's bench.py).

With ``phases=2`` the workspace arrives in two parts: version 1 is trained on the first part and
version 2 continues it on the rest, so retention (recall of version 1's facts by version 2) is
measured too. The base model's converted copy is shared with the real ENGRAM_HOME's models/ cache.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from engram_sdk import samples
from engram_sdk._config import Settings
from engram_sdk._signing import Keyring, load_key_set
from engram_sdk._store import EventStore

from .config import TrainConfig
from .train import Progress, train


def run(config: TrainConfig, *, phases: int = 2, models_cache: Path | None = None,
        on_progress: Any = None, subset: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    records = samples.load_records()
    if subset:
        records = [r for r in records if r.entity_id in subset]
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        home = Path(tmp) / "home"
        settings = Settings(home=home, database_url=f"sqlite:///{home / 'engram.db'}",
                            base_model=Settings.load().base_model)
        settings.init_home()
        if models_cache is not None:
            models_cache.mkdir(parents=True, exist_ok=True)
            (home / "models").symlink_to(models_cache, target_is_directory=True)
        store = EventStore.open(settings.database_url)
        keyring = Keyring(settings.keys_dir)
        keyring.generate(["kestrel"])
        store.trust(load_key_set(keyring.export_public()))
        # Phase 1: everything but the last third of the pages (edits always come with phase 2, so
        # version 2 must learn new values over old ones).
        docs = [r for r in records if r.kind != "edit"]
        cut = len(docs) * 2 // 3 if phases == 2 else len(docs)
        first = docs[:cut] if phases == 2 else records
        second = [r for r in records if r not in first]
        runs = []
        try:
            samples.ingest(store, keyring, team_id="kestrel", records=first)
            runs.append(train("kestrel", store=store, settings=settings, config=config, on_progress=on_progress))
            if phases == 2 and second:
                samples.ingest(store, keyring, team_id="kestrel", records=second)
                runs.append(train("kestrel", store=store, settings=settings, config=config,
                                  on_progress=on_progress))
        finally:
            store.close()
    last = runs[-1]
    m = last.metrics
    return {
        "adapter_recall": m["recall"],
        "base_recall": m.get("base_recall"),
        "rag_recall": m.get("rag_recall"),
        "rag_top_k": m.get("rag_top_k"),
        "rag_prompt_tokens": m.get("rag_prompt_tokens"),
        "rag1_recall": m.get("rag1_recall"),
        "rag1_prompt_tokens": m.get("rag1_prompt_tokens"),
        "adapter_prompt_tokens": m.get("adapter_prompt_tokens"),
        "retention": m.get("retention"),
        "general_score": m.get("general_score"),
        "base_general_score": m.get("base_general_score"),
        "perplexity": m.get("perplexity"),
        "base_perplexity": m.get("base_perplexity"),
        "train_seconds": round(sum(r.metrics["train_seconds"] for r in runs), 1),
        "train_tokens": sum(r.metrics["train_tokens"] for r in runs),
        "tokens_per_s": round(sum(r.metrics["train_tokens"] for r in runs)
                              / max(1e-9, sum(r.metrics["train_seconds"] for r in runs)), 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "adapter_bytes": m.get("adapter_bytes"),
        "scale": m.get("scale"),
        "scale_trials": m.get("scale_trials"),
        "general_misses": m.get("general_misses"),
        "published": [r.published for r in runs],
        "gate_reasons": [r.reasons for r in runs],
        "versions": len(runs),
        "phases": [r.version.manifest["dataset"] for r in runs],
        "probe_questions": m.get("probe_questions"),
        "retention_questions": m.get("retention_questions"),
        "general_questions": m.get("general_questions"),
        "config": config.to_dict(),
        "cpu_threads": _threads(),
        "load_average": os.getloadavg()[0],
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


__all__ = ["Progress", "run"]
