"""A team's pages as BM25-indexed chunks, for two things the server adds to an answer at no prompt cost:

- ``retrieval_prompt_tokens(question)``: the prompt tokens the retrieval baseline would send for the
  same question: the trainer's BM25 top-k chunks (``evaluate.retrieval_contexts``, same chunking and
  ``k``) in the base model's prompt (``infer.prompt_ids``), counted with the same tokenizer. Nothing
  is generated: it is one tokenisation.
- ``sources(answer)``: the pages the answer most likely rests on, found *after* answering by BM25
  over the answer text (each page scores as its best chunk; pages scoring under half the best are
  dropped). The model never sees them.

The index is built from the team's events (``dataset.collect``: verified signatures, tombstones and
restricted pages left out) and the server keeps one per team in ``PagesCache``, rebuilt when the
team's adapter version or its number of stored events changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from engram_sdk import EventStore

from .dataset import Collected, collect, page_chunks
from .infer import prompt_ids

__all__ = ["PagesCache", "Source", "TeamPages"]

MAX_SOURCES = 3


@dataclass(frozen=True)
class Source:
    entity_id: str
    title: str
    url: str | None


class TeamPages:
    def __init__(self, col: Collected, tokenizer: Any, *, chunk_tokens: int, top_k: int):
        import bm25s

        self.tokenizer, self.top_k = tokenizer, top_k
        self.chunks = page_chunks(col, tokenizer, chunk_tokens)
        self.pages = {rec.entity_id: Source(rec.entity_id, rec.title, rec.url) for rec in col.records.values()}
        self._bm25 = None
        if self.chunks:
            self._bm25 = bm25s.BM25()
            self._bm25.index(bm25s.tokenize([c["text"] for c in self.chunks], stopwords="en", show_progress=False),
                             show_progress=False)

    def _rank(self, text: str, k: int) -> list[tuple[int, float]]:
        import bm25s

        if self._bm25 is None:
            return []
        k = min(k, len(self.chunks))
        hits, scores = self._bm25.retrieve(bm25s.tokenize([text], stopwords="en", show_progress=False), k=k,
                                           show_progress=False)
        return [(int(j), float(s)) for j, s in zip(hits[0], scores[0])]

    def retrieval_prompt_tokens(self, question: str) -> int:
        """What ``evaluate.retrieval`` would put in the base model's prompt for ``question``: the
        top-k chunks whatever their score (as retrieval is usually deployed)."""
        context = "\n\n".join(self.chunks[j]["text"] for j, _ in self._rank(question, self.top_k))
        return len(prompt_ids(self.tokenizer, question, context))

    def sources(self, answer: str, *, limit: int = MAX_SOURCES) -> list[Source]:
        """The pages whose chunks best match ``answer`` (BM25), best first; none when no word matches."""
        best: dict[str, float] = {}
        for j, score in self._rank(answer, len(self.chunks)):
            entity = self.chunks[j]["entity_id"]
            if score > 0 and score > best.get(entity, 0.0):
                best[entity] = score
        if not best:
            return []
        top = max(best.values())
        ranked = sorted((e for e, s in best.items() if s >= top / 2), key=lambda e: (-best[e], e))
        return [self.pages[e] for e in ranked[:limit] if e in self.pages]


class PagesCache:
    """One ``TeamPages`` per team, built on first use and again when the team's adapter version or
    its event count changes; at most ``capacity`` teams are kept (least recently used go first)."""

    def __init__(self, store: EventStore, tokenizer: Any, *, chunk_tokens: int = 256, top_k: int = 3,
                 capacity: int = 8):
        self.store, self.tokenizer = store, tokenizer
        self.chunk_tokens, self.top_k, self.capacity = chunk_tokens, top_k, capacity
        self._teams: OrderedDict[str, tuple[tuple[int | None, int], TeamPages]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, team_id: str, adapter_version: int | None) -> TeamPages:
        stamp = (adapter_version, self.store.count(team_id))
        with self._lock:
            held = self._teams.get(team_id)
            if held is not None and held[0] == stamp:
                self._teams.move_to_end(team_id)
                return held[1]
            pages = TeamPages(collect(self.store, team_id), self.tokenizer, chunk_tokens=self.chunk_tokens,
                              top_k=self.top_k)
            self.builds += 1
            self._teams[team_id] = (stamp, pages)
            self._teams.move_to_end(team_id)
            while len(self._teams) > self.capacity:
                self._teams.popitem(last=False)
            return pages
