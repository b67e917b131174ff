"""The trainer as the core sees it: one ``engram_sdk.plugins.Plugin`` under the entry point
``engram.plugins: train``. The core's training jobs, scheduler, status, server and CLI reach this
package only through it.

Importing this module imports neither torch nor the rest of the package: each part imports what it
needs when called, and says ``MissingExtra`` (the ``train`` extra) when torch, transformers or peft
are missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engram_sdk import EventStore, MissingExtra, NoPublishedAdapter, Settings
from engram_sdk.plugins import Answer, AnswerContext, Plugin, TrainedVersion

from .registry import Registry

if TYPE_CHECKING:
    import typer

__all__ = ["plugin"]


def _need_torch(what: str) -> None:
    # Looked up, not imported: `engram worker` checks at start and may never train (torch takes seconds).
    for module in ("torch", "transformers", "peft"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(what, "train", f"{module} is missing")


class Trainer:
    def check(self) -> None:
        _need_torch("training")

    def parse_overrides(self, pairs: Sequence[str]) -> dict[str, Any]:
        from .config import parse_overrides

        return parse_overrides(list(pairs))

    def train(self, team_id: str, *, store: EventStore, settings: Settings,
              overrides: Mapping[str, Any] | None = None, from_scratch: bool = False,
              on_progress: Callable[[Any], None] | None = None) -> TrainedVersion:
        self.check()
        from .config import TrainConfig
        from .train import train

        config = TrainConfig.from_dict(dict(overrides)) if overrides else None
        r = train(team_id, store=store, settings=settings, config=config, from_scratch=from_scratch,
                  on_progress=on_progress)
        return TrainedVersion(version=r.version.version, published=r.published, reasons=list(r.reasons))


class AdapterIndex(Registry):
    """The registry, with the report page the server serves."""

    def report(self, team_id: str) -> str:
        try:
            from .report import render
        except ImportError as exc:  # matplotlib draws the plots
            raise MissingExtra("the adapter report", "train", f"{exc.name} is missing") from None
        return render(self, team_id)


def _adapters(store: EventStore, settings: Settings) -> AdapterIndex:
    return AdapterIndex(store, settings.adapters_dir)


class Answerer:
    """``AdapterPool`` as the server's answerer: "no adapter" is the core's ``NoPublishedAdapter``,
    and an answer's context comes from ``PagesCache`` with the retrieval baseline's chunking and k
    of this deployment's training settings."""

    def __init__(self, pool: Any, store: EventStore, capacity: int, overrides: Mapping[str, Any]):
        self.pool, self.store, self.capacity, self.overrides = pool, store, capacity, overrides
        self._pages: Any = None

    @property
    def hits(self) -> int:
        return int(self.pool.hits)

    @property
    def loaded(self) -> list[str]:
        return list(self.pool.loaded)

    def complete(self, team_id: str, question: str, *, max_tokens: int, temperature: float,
                 stop: list[str] | None) -> Answer:
        from .pool import NoAdapter

        try:
            return self.pool.complete(team_id, question, max_tokens=max_tokens, temperature=temperature,  # type: ignore[no-any-return]
                                      stop=stop)
        except NoAdapter as exc:
            raise NoPublishedAdapter(str(exc)) from None

    def stream(self, team_id: str, question: str, *, max_tokens: int, temperature: float,
               stop: list[str] | None) -> Iterator[str | Answer]:
        from .pool import NoAdapter

        try:
            yield from self.pool.stream(team_id, question, max_tokens=max_tokens, temperature=temperature, stop=stop)
        except NoAdapter as exc:
            raise NoPublishedAdapter(str(exc)) from None

    def context(self, team_id: str, question: str, answer: Answer) -> AnswerContext:
        from .config import TrainConfig
        from .pages import PagesCache

        if self._pages is None:
            o = self.overrides
            self._pages = PagesCache(self.store, self.pool.engine.base.tokenizer,
                                     chunk_tokens=o.get("rag_chunk_tokens", TrainConfig.rag_chunk_tokens),
                                     top_k=o.get("rag_top_k", TrainConfig.rag_top_k), capacity=self.capacity)
        pages = self._pages.get(team_id, answer.adapter_version)
        return {"retrieval_prompt_tokens": pages.retrieval_prompt_tokens(question),
                "sources": [{"entity_id": s.entity_id, "title": s.title, "url": s.url}
                            for s in pages.sources(answer.text)]}


def _answerer(store: EventStore, settings: Settings, capacity: int, overrides: Mapping[str, Any]) -> Answerer:
    _need_torch("answering queries")
    from . import base as base_model
    from .infer import Engine
    from .pool import AdapterPool

    engine = Engine(base_model.load(settings.base_model, settings.cache_root))
    return Answerer(AdapterPool(engine, Registry(store, settings.adapters_dir), capacity=capacity), store, capacity,
                    overrides)


def _commands(app: typer.Typer, bench: typer.Typer) -> None:
    from .cli import add_commands  # typer and rich only: the commands import torch when they run

    add_commands(app, bench)


plugin = Plugin(trainer=Trainer(), adapters=_adapters, answerer=_answerer, commands=_commands)
