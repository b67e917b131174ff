"""Evaluation on every run, scored by one rule (``facts.is_correct``: normalised containment).

- recall:     held-out phrasings of the new facts, answered closed-book by the adapter
- retention:  held-out phrasings of earlier versions' facts that are still current, with its 95%
              Wilson interval (``retention_interval``: the sample is small, the gate decides with it)
- general:    the shipped general-knowledge probe (121 questions), adapter vs base model
- perplexity: on a shipped general text sample, adapter vs base model
- retrieval:  BM25 (bm25s) over the team's chunks (<= 256 tokens), top-k chunks in the base
              model's prompt, as RAG is usually deployed; accuracy and mean prompt tokens
Base-model numbers depend only on the base model and the probe, so they are computed with the
same engine (adapter disabled) in the same run.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from engram_sdk import ensure_private_dir

from . import facts as F
from .dataset import ProbeItem
from .infer import Engine


def general_probe() -> list[dict[str, Any]]:
    text = resources.files("engram_training").joinpath("data/general_probe.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def general_text() -> str:
    return resources.files("engram_training").joinpath("data/general_text.txt").read_text()


def replay_prompts() -> list[str]:
    text = resources.files("engram_training").joinpath("data/general_replay.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class Score:
    accuracy: float | None
    correct: int
    total: int
    prompt_tokens: float  # mean per question
    wrong: list[dict[str, str]]
    ok: list[bool] | None = None  # per question, in order (for paired comparisons)
    confidence: list[float] | None = None  # per question: mean log-probability of the answer

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "prompt_tokens": round(self.prompt_tokens, 1)}


def score(engine: Engine, items: list[tuple[str, list[str]]], *, adapter: str | None,
          contexts: list[str] | None = None, max_new_tokens: int = 32, batch_size: int = 16,
          confidence: bool = False) -> Score:
    if not items:
        return Score(None, 0, 0, 0.0, [], [], [] if confidence else None)
    answers = engine.answer_many([q for q, _ in items], adapter=adapter, contexts=contexts,
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, confidence=confidence)
    ok = [F.is_correct(a.text, exp) for a, (_, exp) in zip(answers, items)]
    wrong = [{"question": q, "expected": exp[0], "answer": a.text}
             for a, (q, exp), good in zip(answers, items, ok) if not good]
    return Score(sum(ok) / len(ok), sum(ok), len(ok), sum(a.prompt_tokens for a in answers) / len(answers), wrong,
                 ok, [a.confidence for a in answers] if confidence else None)


def calibrate_abstention(known: list[float], unknown: list[float]) -> dict[str, Any]:
    """The threshold under which an adapter should say it doesn't know.

    ``known``: its confidence (mean log-probability of its answer) on probe questions it answered
    right; ``unknown``: on questions about topics the team never wrote about. The threshold keeps
    the most right answers while refusing the most unknown ones (Youden's J; of equal thresholds
    the lowest, so a colleague's question asked in other words than the probe's, which the
    adapter is less sure of, is refused as rarely as possible). None when the two don't separate
    (J under 0.2) or either side is empty: then the adapter never abstains on confidence."""
    out: dict[str, Any] = {"threshold": None, "known": len(known), "unknown": len(unknown)}
    if not known or not unknown:
        return out
    best_j, best_t = -1.0, None
    for t in sorted(set(known) | set(unknown)):
        t = t + 1e-5  # just above a score: that score is refused
        j = sum(k >= t for k in known) / len(known) + sum(u < t for u in unknown) / len(unknown) - 1
        if j > best_j + 1e-12:
            best_j, best_t = j, t
    # below the lowest score nothing is refused: J 0
    out.update({"j": round(best_j, 3)})
    if best_t is None or best_j < 0.2:
        return out
    out.update({"threshold": round(best_t, 6),
                "known_kept": round(sum(k >= best_t for k in known) / len(known), 3),
                "unknown_refused": round(sum(u < best_t for u in unknown) / len(unknown), 3)})
    return out


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a proportion ``correct / total`` (None when ``total`` is 0).

    Wilson (1927), "Probable inference, the law of succession, and statistical inference", JASA 22.
    Chosen over the normal (Wald) interval because it stays inside [0, 1] and keeps its coverage
    on small samples and proportions near 0 or 1 (Brown, Cai & DasGupta 2001, Statistical Science
    16): a retention sample is tens of questions, often almost all right.
    """
    if total <= 0:
        return None
    if not 0 <= correct <= total:
        raise ValueError(f"correct must lie in [0, {total}], not {correct}")
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def perplexity(engine: Engine, text: str, *, adapter: str | None) -> float:
    import torch

    tok = engine.base.tokenizer
    ids = torch.tensor([tok.encode(text)[:1024]], device=engine.base.device)
    model = engine.model
    with torch.no_grad():
        if adapter is None and engine._loaded:
            with model.disable_adapter():
                loss = model(input_ids=ids, labels=ids).loss
        else:
            if adapter is not None:
                model.set_adapter(adapter)
            loss = model(input_ids=ids, labels=ids).loss
    return float(math.exp(loss.item()))


def retrieval_contexts(chunks: list[dict[str, str]], questions: list[str], *, top_k: int) -> list[str]:
    """What the retrieval baseline puts in the prompt for each question: the top-k BM25 chunks."""
    import bm25s

    corpus = [c["text"] for c in chunks]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
    k = min(top_k, len(corpus))
    hits, _ = retriever.retrieve(bm25s.tokenize(questions, stopwords="en", show_progress=False),
                                 k=k, show_progress=False)
    return ["\n\n".join(corpus[int(j)] for j in row) for row in hits]


@lru_cache(maxsize=1)
def _wordllama() -> Any:
    import wordllama

    # wordllama looks for its shipped files under the wrong folder name unless pointed at them.
    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def dense_contexts(chunks: list[dict[str, str]], questions: list[str], *, top_k: int) -> list[str]:
    """The top-k chunks by cosine similarity of WordLlama embeddings: a dense retriever whose
    weights ship inside its package (``wordllama``), so nothing is downloaded."""
    import numpy as np

    wl = _wordllama()
    corpus = [c["text"] for c in chunks]
    docs = np.asarray(wl.embed(corpus, norm=True))
    qs = np.asarray(wl.embed(questions, norm=True))
    k = min(top_k, len(corpus))
    order = np.argsort(-(qs @ docs.T), axis=1)[:, :k]
    return ["\n\n".join(corpus[int(j)] for j in row) for row in order]


def retrieval(engine: Engine, chunks: list[dict[str, str]], probe: list[ProbeItem], *, top_k: int,
              max_new_tokens: int, batch_size: int) -> Score:
    """The base model with the top-k BM25 chunks in its prompt."""
    if not probe or not chunks:
        return Score(None, 0, len(probe), 0.0, [])
    contexts = retrieval_contexts(chunks, [p.question for p in probe], top_k=top_k)
    return score(engine, [(p.question, p.answers) for p in probe], adapter=None, contexts=contexts,
                 max_new_tokens=max_new_tokens, batch_size=batch_size)


def base_general(engine: Engine, config: Any, cache: Path | None) -> tuple[Score, float]:
    """The base model's general score and perplexity: the same for every team and run (greedy
    decoding), so cached per base model, probe, prompt and answer length in the per-user cache."""
    from .infer import SYSTEM

    gen_items = [(g["question"], g["answers"]) for g in general_probe()]
    key = hashlib.sha256(json.dumps([gen_items, general_text(), SYSTEM, config.general_max_new_tokens,
                                     engine.base.id.sha256]).encode()).hexdigest()[:16]
    path = cache / f"base-general-{key}.json" if cache else None
    if path is not None and path.exists():
        d = json.loads(path.read_text())
        if "ok" in d:
            return Score(d["accuracy"], d["correct"], d["total"], d["prompt_tokens"], d["wrong"],
                         d["ok"]), d["perplexity"]
    s = score(engine, gen_items, adapter=None, max_new_tokens=config.general_max_new_tokens,
              batch_size=config.eval_batch_size)
    ppl = perplexity(engine, general_text(), adapter=None)
    if path is not None:
        ensure_private_dir(path.parent)  # the per-user cache is 0700 all the way down
        path.write_text(json.dumps({"accuracy": s.accuracy, "correct": s.correct, "total": s.total,
                                    "prompt_tokens": s.prompt_tokens, "wrong": s.wrong, "perplexity": ppl,
                                    "ok": s.ok}))
    return s, ppl


def evaluate(engine: Engine, adapter: str | None, probe: list[ProbeItem], old_probe: list[ProbeItem],
             chunks: list[dict[str, str]], config: Any, *, baselines: bool = True,
             cache: Path | None = None, unanswerable: list[str] | None = None) -> dict[str, Any]:
    """Every metric of one adapter (or of the base model when ``adapter`` is None); with
    ``unanswerable`` questions also its abstention threshold (``calibrate_abstention``)."""
    kw = {"max_new_tokens": config.max_new_tokens, "batch_size": config.eval_batch_size}
    gen_items = [(g["question"], g["answers"]) for g in general_probe()]
    probe_items = [(p.question, p.answers) for p in probe]
    recall = score(engine, probe_items, adapter=adapter, confidence=bool(unanswerable), **kw)
    retention = score(engine, [(p.question, p.answers) for p in old_probe], adapter=adapter, **kw)
    general = score(engine, gen_items, adapter=adapter, max_new_tokens=config.general_max_new_tokens,
                    batch_size=config.eval_batch_size)
    interval = wilson_interval(retention.correct, retention.total)
    out: dict[str, Any] = {
        "recall": recall.accuracy,
        "retention": retention.accuracy,
        "retention_interval": [round(x, 4) for x in interval] if interval else None,
        "general_score": general.accuracy,
        "perplexity": perplexity(engine, general_text(), adapter=adapter),
        "adapter_prompt_tokens": recall.prompt_tokens,
        "probe_questions": recall.total,
        "retention_questions": retention.total,
        "general_questions": general.total,
        "recall_misses": recall.wrong[:20],
        "general_misses": general.wrong[:40],  # what forgetting looks like, for the recipe search
        "general_ok": general.ok,
    }
    if unanswerable and recall.confidence is not None:
        refused = engine.answer_many(unanswerable, adapter=adapter, confidence=True, **kw)
        known = [c for c, good in zip(recall.confidence, recall.ok or []) if good]
        cal = calibrate_abstention(known, [a.confidence for a in refused if a.confidence is not None])
        t = cal["threshold"]
        # what the probe scores once answers under the threshold become "I don't know"
        cal["recall_with_abstention"] = (round(sum(good and c >= t for c, good in zip(recall.confidence, recall.ok))
                                               / len(recall.ok), 3) if t is not None and recall.ok else recall.accuracy)
        out["abstain_below"] = t
        out["abstain_calibration"] = cal
    if baselines:
        base_gen, base_ppl = base_general(engine, config, cache)
        out.update({"base_general_score": base_gen.accuracy, "base_perplexity": base_ppl})
        if general.ok and base_gen.ok:
            from .written import paired_difference

            out["general_difference"] = paired_difference(general.ok, base_gen.ok)
        wanted = set(config.eval_baselines)
        if "base_recall" in wanted:
            out["base_recall"] = score(engine, probe_items, adapter=None, **kw).accuracy
        if "rag" in wanted:
            rag = retrieval(engine, chunks, probe, top_k=config.rag_top_k, **kw)
            out.update({"rag_recall": rag.accuracy, "rag_prompt_tokens": rag.prompt_tokens,
                        "rag_top_k": config.rag_top_k})
        if "rag1" in wanted:
            rag1 = retrieval(engine, chunks, probe, top_k=1, **kw)
            out.update({"rag1_recall": rag1.accuracy, "rag1_prompt_tokens": rag1.prompt_tokens})
    return out
