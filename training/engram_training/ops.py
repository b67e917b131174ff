"""Operations on a team's adapters that the CLI and the server share: evaluate the current
version, answer a query, check for deleted entities still inside the weights, purge a team."""

from __future__ import annotations

import json
import shutil
from typing import Any

from engram_sdk import EventStore, Settings, TrainingError
from engram_sdk.connectors import Connections, open_secret_store

from . import dataset as D
from .config import TrainConfig
from .registry import Registry, Version


def deleted_inside(store: EventStore, version: Version) -> list[str]:
    """Entities deleted (tombstoned, by a verified event) that this version was trained on."""
    col = D.collect(store, version.team_id)
    return sorted(col.deleted & set(version.manifest.get("entities_in_weights", [])))


def show(store: EventStore, settings: Settings, team_id: str, version: int | None = None) -> dict[str, Any]:
    v = Registry(store, settings.adapters_dir).get(team_id, version)
    inside = deleted_inside(store, v)
    m = v.manifest
    return {
        **v.summary(),
        "path": str(v.path),
        "base_model": m.get("base_model"),
        "parent_version": m.get("parent_version"),
        "from_scratch": m.get("from_scratch"),
        "watermark": m.get("watermark"),
        "events": m.get("events"),
        "dataset": m.get("dataset"),
        "metrics": {k: v2 for k, v2 in m.get("metrics", {}).items() if k != "recall_misses"},
        "gates": m.get("gates"),
        "entities_in_weights": len(m.get("entities_in_weights", [])),
        "deleted_entities_inside": inside,
        "forget_hint": (f"{len(inside)} deleted entities are still in this adapter's weights: "
                        f"run `engram train --team {team_id} --from-scratch`") if inside else None,
    }


def query(store: EventStore, settings: Settings, team_id: str, question: str, *,
          max_new_tokens: int = 64) -> dict[str, Any]:
    from . import base as base_model
    from .infer import Engine
    from .pool import abstain_threshold

    v = Registry(store, settings.adapters_dir).get(team_id)
    base = base_model.load(settings.base_model, settings.cache_root)
    with Engine(base) as engine:
        name = f"{team_id}@v{v.version}"
        engine.load(name, v.path)
        a = engine.answer(question, adapter=name, max_new_tokens=max_new_tokens,
                          abstain_below=abstain_threshold(v.manifest))
    return {"answer": a.text, "adapter_version": v.version, "team": team_id, "abstained": a.abstained,
            "usage": {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens}}


def evaluate_version(store: EventStore, settings: Settings, team_id: str, version: int | None = None) -> dict[str, Any]:
    """Re-run every evaluation of a stored version on its own probe, against the team's current
    documents for the retrieval baseline."""
    from . import base as base_model
    from .dataset import ProbeItem
    from .evaluate import evaluate
    from .infer import Engine

    v = Registry(store, settings.adapters_dir).get(team_id, version)
    config = TrainConfig.from_dict(v.manifest.get("config", {}))
    base = base_model.load(settings.base_model, settings.cache_root)
    if v.manifest["base_model"]["sha256"] != base.id.sha256:
        raise TrainingError(f"version {v.version} was trained on another base model than the one configured")
    col = D.collect(store, team_id, allow_restricted=config.allow_restricted)
    current = {f.ident: f for f in D.current_facts(col)}
    prose = v.manifest.get("generation") == D.GENERATIONS["prose"]
    present = col.entities()
    probe, old = [], []
    n_new = v.manifest.get("dataset", {}).get("probe_questions", 0)
    lines = (v.path / "probe.jsonl").read_text().splitlines() if (v.path / "probe.jsonl").exists() else []
    for i, line in enumerate(lines):
        p = ProbeItem(**json.loads(line))
        if prose:  # a unit's question: asked while its record is there, with the answer it had
            if p.fact != "operator" and p.entity_id not in present:
                continue
            (probe if i < n_new else old).append(p)
            continue
        if p.fact != "operator" and p.fact not in current:
            continue  # deleted or restricted since: not asked
        if p.fact in current:
            p.answers = [current[p.fact].value]
        (probe if i < n_new else old).append(p)
    chunks = D.page_chunks(col, base.tokenizer, config.rag_chunk_tokens)
    with Engine(base) as engine:
        engine.load("evaluated", v.path)
        metrics = evaluate(engine, "evaluated", probe, old, chunks, config,
                           cache=base_model.copy_dir(settings.cache_root, base.id))
    metrics.pop("recall_misses", None)
    return {"team": team_id, "adapter_version": v.version, **metrics}


def purge_team(store: EventStore, settings: Settings, team_id: str) -> dict[str, int]:
    """Remove a team's events, adapters (files and rows), connections and their secrets."""
    conns = [c for c in Connections(store).list() if c.team_id == team_id]
    secrets = open_secret_store(settings, store.engine)
    for c in conns:
        Connections(store).remove(c.name, secrets)
    events = store.purge_team_events(team_id)
    versions = Registry(store, settings.adapters_dir).purge(team_id)
    shutil.rmtree(settings.adapters_dir / "work" / team_id, ignore_errors=True)
    return {"events": events, "adapter_versions": versions, "connections": len(conns)}


