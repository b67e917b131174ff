"""``engram bench train``: the demo's Kestrel workspace (~30 records, ~60 facts; a clone's
examples/kestrel_demo) through the whole trainer in a scratch ENGRAM_HOME, as a script you run
(like nanoGPT's bench.py).

With ``phases=2`` the workspace arrives in two parts: version 1 is trained on the first part and
version 2 continues it on the rest, so retention (recall of version 1's facts by version 2) is
measured too. The base model's converted copy is shared with the real ENGRAM_HOME's models/ cache.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from engram_sdk import EventStore, Keyring, Settings, load_key_set, samples

from . import facts as F
from .config import TrainConfig
from .train import Progress, train


def run(config: TrainConfig, *, phases: int = 2,
        on_progress: Any = None, subset: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    records = samples.load_example("kestrel_demo").load_records()
    if subset:
        records = [r for r in records if r.entity_id in subset]
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        settings, store, keyring = _scratch(Path(tmp), "kestrel")
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


def _scratch(tmp: Path, team: str) -> tuple[Settings, EventStore, Keyring]:
    """A scratch ENGRAM_HOME with a SQLite store and a key trusted for ``team``; the base model
    comes from the user's cache (``Settings.cache_root``), so it is converted once per user."""
    home = tmp / "home"
    real = Settings.load()
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'engram.db'}", base_model=real.base_model,
                        cache_dir=real.cache_dir)
    settings.init_home()
    store = EventStore.open(settings.database_url)
    keyring = Keyring(settings.keys_dir)
    keyring.generate([team])
    store.trust(load_key_set(keyring.export_public()))
    return settings, store, keyring


def _threads() -> int:
    import torch

    return torch.get_num_threads()


__all__ = ["Progress", "run"]


# --- a hand-written evaluation workspace ------------------------------------------------------------

WHOLE_CHUNK_TOKENS = 512  # the whole-workspace baseline joins the pages' chunks of this size


def _chunker(col: Any, tok: Any) -> Callable[[int], list[dict[str, str]]]:
    """The pages' chunks of a given size, cut once per size (the sweep asks each size several times)."""
    from . import dataset as D

    return lru_cache(maxsize=None)(lambda size: D.page_chunks(col, tok, size))


def _contexts(setting: dict[str, Any], chunks: Callable[[int], list[dict[str, str]]],
              questions: list[Any]) -> list[str]:
    """What one retrieval setting of the sweep puts in each question's prompt: BM25 or dense top k
    of the pages' chunks (``chunks(size)``, see ``_chunker``), or the whole workspace. The edits'
    baseline asks the first version's best setting again, whichever kind it is."""
    from .evaluate import dense_contexts, retrieval_contexts

    if setting["retriever"] == "whole":
        return ["\n\n".join(c["text"] for c in chunks(WHOLE_CHUNK_TOKENS))] * len(questions)
    pick = {"bm25": retrieval_contexts, "dense": dense_contexts}[setting["retriever"]]
    return pick(chunks(setting["chunk_tokens"]), [q.question for q in questions], top_k=setting["top_k"])


def run_workspace(config: TrainConfig, *, workspace: str = "tidewater",
                  on_progress: Any = None, on_step: Any = None, baselines: bool = True,
                  whole_workspace: bool = False, continual: TrainConfig | None = None,
                  edits: bool = True) -> dict[str, Any]:
    """Train a first version on ``workspace``, ask its hand-written questions (adapter closed-book,
    the base model, BM25 retrieval at several chunk sizes and k), apply its text edits as the
    Notion connector delivers them, run one continual update, and ask the edit questions
    (``edits=False``: not, and every edit figure is None: a first version's figures in less time).

    The questions are read here only: nothing that builds training data sees them."""
    from . import base as base_model
    from . import dataset as D
    from . import written as W
    from .infer import DONT_KNOW, Engine, below
    from .registry import Registry

    say = on_step or (lambda m: None)
    started = time.perf_counter()
    records = samples.load_records(workspace)
    qs = W.questions(workspace)
    changes = W.edits(workspace)
    first, later = W.split_by_edits(qs, changes)
    team = "bench"
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        settings, store, keyring = _scratch(Path(tmp), team)
        try:
            samples.ingest(store, keyring, team_id=team, records=records)
            say("training the first version")
            t_first = time.perf_counter()
            r1 = train(team, store=store, settings=settings, config=config, on_progress=on_progress)
            first_seconds = time.perf_counter() - t_first
            base = base_model.load(settings.base_model, settings.cache_root)
            tok = base.tokenizer
            trained = _trained_answers(r1.examples)
            registry = Registry(store, settings.adapters_dir)
            kw = {"max_new_tokens": config.max_new_tokens, "batch_size": config.eval_batch_size}

            def scored(items: list[W.Question], texts: list[str]) -> dict[str, Any]:
                by_kind: dict[str, Any] = {}
                for kind in sorted({q.kind for q in items}):
                    sel = [(q, t) for q, t in zip(items, texts) if q.kind == kind]
                    by_kind[kind] = W.score([q for q, _ in sel], [t for _, t in sel])
                by_kind["_answers"] = texts
                return by_kind

            def ask(engine: Engine, items: list[W.Question], adapter: str | None,
                    contexts: list[str] | None = None) -> tuple[dict[str, Any], float]:
                answers = engine.answer_many([q.question for q in items], adapter=adapter, contexts=contexts,
                                             confidence=adapter is not None, **kw)
                by_kind = scored(items, [a.text for a in answers])
                by_kind["_confidence"] = [a.confidence for a in answers]
                return by_kind, sum(a.prompt_tokens for a in answers) / max(1, len(answers))

            def abstaining(items: list[W.Question], asked: dict[str, Any], threshold: float | None) -> dict[str, Any]:
                """The same answers as served with the adapter's abstention threshold."""
                if threshold is None:
                    return asked
                return scored(items, [DONT_KNOW if below(c, threshold) else t
                                      for t, c in zip(asked["_answers"], asked["_confidence"])])

            engine = Engine(base)
            say("asking the hand-written questions")
            try:
                engine.load("v1", r1.version.path)
                raw1, adapter_tokens = ask(engine, first, "v1")
                held1 = abstaining(first, raw1, r1.metrics.get("abstain_below"))
                adapter1 = held1 if config.abstain_by_confidence else raw1
                base1, _ = ask(engine, first, None)
                say("asking the gate's probe as generated and in other words")
                reworded = _probe_both_ways(engine, "v1", r1.version.path, base, kw)
                sweep, sweep_note = [], None
                if baselines:
                    chunks = _chunker(D.collect(store, team), tok)
                    grid = [("bm25", 128, (1, 3, 8)), ("bm25", 256, (1, 3)), ("dense", 128, (1, 3)),
                            ("dense", 256, (1,))]
                    for retriever, size, ks in grid:
                        for k in ks:
                            say(f"retrieval baseline: {retriever}, chunks of {size} tokens, top {k}")
                            setting = {"retriever": retriever, "chunk_tokens": size, "top_k": k}
                            res, tokens = ask(engine, first, None, _contexts(setting, chunks, first))
                            sweep.append({**setting, "prompt_tokens": round(tokens, 1), **_rates(res)})
                    # The whole workspace in the prompt, where it fits the model's context.
                    whole = {"retriever": "whole", "chunk_tokens": None, "top_k": None}
                    ctx = _contexts(whole, chunks, first) if whole_workspace else []
                    size = len(tok.encode(ctx[0])) if ctx else 0
                    limit = getattr(base.model.config, "max_position_embeddings", 2048) - 256
                    if not whole_workspace:
                        sweep_note = "the whole-workspace baseline was not asked for (--whole-workspace)"
                    elif size <= limit:
                        say("baseline: the whole workspace in the prompt")
                        res, tokens = ask(engine, first, None, ctx)
                        sweep.append({**whole, "prompt_tokens": round(tokens, 1), **_rates(res)})
                    else:
                        sweep_note = f"the whole workspace ({size} tokens) exceeds {limit}"
            finally:
                engine.close()

            best = max(sweep, key=lambda s: (s["answerable"], -s["prompt_tokens"])) if sweep else None
            r2 = raw2 = held2 = adapter2 = best_edit = None
            if edits:
                say("applying the workspace's edits and running one continual update")
                samples.ingest(store, keyring, team_id=team, records=W.edit_records(records, changes))
                # Bounded by the update's own config (``continual_*``), as a nightly update is.
                r2 = train(team, store=store, settings=settings, config=continual or config,
                           on_progress=on_progress)
                engine = Engine(base)
                try:
                    engine.load("v2", r2.version.path)
                    raw2, _ = ask(engine, later, "v2")
                    held2 = abstaining(later, raw2, r2.metrics.get("abstain_below"))
                    adapter2 = held2 if (continual or config).abstain_by_confidence else raw2
                    if baselines and best is not None:  # the first version's best setting, on the edited pages
                        res, _ = ask(engine, later, None, _contexts(best, _chunker(D.collect(store, team), tok), later))
                        best_edit = _rates(res).get("edit")
                finally:
                    engine.close()
            current = registry.current(team)
        finally:
            store.close()
    rates1 = _rates(adapter1)
    m1, m2 = r1.metrics, (r2.metrics if r2 else {})
    return {
        "workspace": workspace,
        "written_single_recall": rates1.get("single"),
        "written_two_page_recall": rates1.get("two_page"),
        "written_edit_new_value": _rates(adapter2).get("edit"),
        "written_abstain_rate": rates1.get("unanswerable"),
        "written_questions": {k: adapter1[k]["total"] for k in adapter1 if not k.startswith("_")},
        # the share of each kind that a trained answer, recited word for word, would get right:
        # what extraction put within reach, so recall far below it is the adapter not reciting,
        # not extraction missing the fact
        "written_in_training": _in_training(first, trained),
        # what the wrong answers to the answerable ones are: a trained statement recited (the
        # wrong one), the adapter's own words, or "I don't know"
        "written_misses": _misses(first, raw1["_answers"], trained),
        # both ways, whichever the config serves: answers as generated, and with answers under the
        # adapter's calibrated confidence threshold turned into "I don't know"
        "written_without_abstention": {**_rates(raw1), "edit": _rates(raw2).get("edit")},
        "written_with_abstention": {**_rates(held1), "edit": _rates(held2).get("edit")},
        "abstain_below": [m1.get("abstain_below"), m2.get("abstain_below")],
        "abstain_calibration": [m1.get("abstain_calibration"), m2.get("abstain_calibration")],
        "base_written": _rates(base1),
        "best_retrieval_recall": best["answerable"] if best else None,
        "best_retrieval_single": best.get("single") if best else None,
        "best_retrieval_two_page": best.get("two_page") if best else None,
        "best_retrieval_prompt_tokens": best["prompt_tokens"] if best else None,
        "best_retrieval": {k: best[k] for k in ("retriever", "chunk_tokens", "top_k")} if best else None,
        "best_retrieval_edit_new_value": best_edit,
        "retrieval_sweep": sweep,
        "retrieval_note": sweep_note,
        "prompt_token_ratios": {f"{s['retriever']}-{s['chunk_tokens']}-top{s['top_k']}" if s["top_k"] else
                                s["retriever"]:
                                round(s["prompt_tokens"] / max(adapter_tokens, 1e-9), 1) for s in sweep},
        "adapter_prompt_tokens": round(adapter_tokens, 1),
        "generated_probe_recall": m1.get("recall"),
        "generated_probe_questions": m1.get("probe_questions"),
        # the gate's probe both ways on the same adapter: as generated, and with one word of each
        # question swapped for a synonym where one keeps its meaning (``probe_in_other_words``)
        "probe_in_other_words": reworded,
        "general_score": m1.get("general_score"),
        "base_general_score": m1.get("base_general_score"),
        "general_difference": m1.get("general_difference"),
        "general_score_after_edits": m2.get("general_score"),
        "general_difference_after_edits": m2.get("general_difference"),
        "perplexity": m1.get("perplexity"),
        "base_perplexity": m1.get("base_perplexity"),
        "published": [r1.published, r2.published if r2 else None],
        "gate_reasons": [r1.reasons, r2.reasons if r2 else None],
        "current_version": current.version if current else None,
        "train_seconds": m1.get("train_seconds"),
        "build_seconds": m1.get("build_seconds"),
        "first_version_seconds": round(first_seconds, 1),  # training, gates and the run's own evaluation
        "update_seconds": m2.get("train_seconds"),
        "epochs_run": m1.get("epochs_run"),
        "train_tokens": m1.get("train_tokens"),
        "tokens_per_s": m1.get("tokens_per_s"),
        "examples": r1.stats.get("examples"),
        "adapter_bytes": m1.get("adapter_bytes"),  # the first version's adapter file
        "update_examples": r2.stats.get("examples") if r2 else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
        # (question id, answer as generated, its confidence)
        "answers": {"first": list(zip([q.id for q in first], raw1["_answers"], raw1["_confidence"])),
                    "edits": list(zip([q.id for q in later], raw2["_answers"], raw2["_confidence"])) if raw2 else []},
        "config": config.to_dict(),
        "continual_config": (continual or config).to_dict(),
        "cpu_threads": _threads(),
        "load_average": os.getloadavg()[0],
    }


def _probe_both_ways(engine: Any, adapter: str, version_path: Path, base: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """The version's own probe (``probe.jsonl``) asked as generated and in other words (one word of
    each question swapped for a synonym where one keeps its meaning: ``synonyms.paraphrase``), on
    the same adapter. With ``probe_in_other_words`` (the default) the gate asked the reworded form
    and the file keeps the generated one; without it the questions are reworded here."""
    from . import synonyms as S

    with open(version_path / "probe.jsonl") as f:
        items = [json.loads(line) for line in f if line.strip()]
    if not items:
        return {"questions": 0, "reworded": 0, "recall": None, "recall_as_generated": None, "examples": []}
    generated = [it.get("generated") or it["question"] for it in items]
    if any("generated" in it for it in items):
        reworded = [it["question"] for it in items]
    else:
        other = S.paraphrase(generated, model=base.model, tokenizer=base.tokenizer, batch_size=kw["batch_size"],
                             device=getattr(base, "device", "cpu"))
        reworded = [o or q for q, o in zip(generated, other)]
    differ = [k for k, (g, r) in enumerate(zip(generated, reworded)) if g != r]
    # a question no swap changed is asked once and counts for both forms
    answers = engine.answer_many(generated + [reworded[k] for k in differ], adapter=adapter, **kw)
    n = len(items)
    as_generated = [F.is_correct(a.text, it["answers"]) for a, it in zip(answers[:n], items)]
    in_other_words = list(as_generated)
    for k, a in zip(differ, answers[n:]):
        in_other_words[k] = F.is_correct(a.text, items[k]["answers"])
    return {"questions": n, "reworded": len(differ),
            "recall": round(sum(in_other_words) / n, 3), "recall_as_generated": round(sum(as_generated) / n, 3),
            "examples": [[generated[k], reworded[k]] for k in differ[:5]]}


def _trained_answers(examples: list[list[dict[str, str]]]) -> list[str]:
    """Each distinct answer the examples train (the assistant turn that ends each one)."""
    return sorted({m[-1]["content"] for m in examples if m and m[-1].get("role") == "assistant"})


def _in_training(items: list[Any], answers: list[str]) -> dict[str, float]:
    """Per kind of answerable question, the share that some trained answer is scored correct for
    (by the hand-written questions' own scorer, wrong values included)."""
    from . import written as W

    out = {}
    for kind in ("single", "two_page"):
        sel = [q for q in items if q.kind == kind]
        if sel:
            out[kind] = round(sum(any(W.correct(q, a) for a in answers) for q in sel) / len(sel), 3)
    return out


def _misses(items: list[Any], answers: list[str], trained: list[str]) -> dict[str, int]:
    """The wrong answers to answerable questions, counted by what they are: ``recited`` when at least 80% of the
    answer's word 4-grams are in trained answers (it recalled a statement, not the one asked
    for), ``dont_know``, or ``own_words`` (what it made up, often from the question's words)."""
    from . import written as W

    def grams(text: str) -> set[tuple[str, ...]]:
        words = F.normalize(text).split()
        return {tuple(words[i:i + 4]) for i in range(len(words) - 3)}

    seen = set().union(*(grams(t) for t in trained))
    out = {"recited": 0, "own_words": 0, "dont_know": 0}
    for q, a in zip(items, answers):
        if q.kind == "unanswerable" or W.correct(q, a):
            continue
        if W.abstains(a):
            out["dont_know"] += 1
        else:
            g = grams(a)
            out["recited" if g and len(g & seen) >= 0.8 * len(g) else "own_words"] += 1
    return out


def _rates(by_kind: dict[str, Any] | None) -> dict[str, Any]:
    """Rate per kind of question, and over the answerable ones; None (not asked): no rates."""
    by_kind = by_kind or {}
    out = {k: v["rate"] for k, v in by_kind.items() if not k.startswith("_")}
    answerable = [ok for k, v in by_kind.items() if k in ("single", "two_page") for ok in v["ok"]]
    out["answerable"] = round(sum(answerable) / len(answerable), 3) if answerable else None
    return out
