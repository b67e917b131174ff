"""Serving many team adapters over one base model: the server's inference engine.

- One base model in memory (``infer.Engine``); each team's *current* adapter version is loaded on
  demand under the name ``<team>@v<N>`` and kept in an LRU of ``capacity`` adapters.
- A request names a team, never an adapter: the pool resolves the team's current version from
  the registry, so a publish or rollback takes effect on the next request, and no request can be
  answered with another team's adapter.
- Switching the active adapter and generating happen under one lock (peft's active adapter is
  global to the model). That serialises generation, which on a CPU (or one GPU without batched
  multi-LoRA kernels) costs nothing. The scale-out path is a multi-LoRA server (vLLM, LoRAX) loading
  the same PEFT directories.
- Generation: greedy at temperature 0, sampling above; stop sequences; prompt and completion tokens
  counted; ``stream`` yields text pieces as they are decoded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engram_sdk import TrainingError

from .infer import DONT_KNOW, Engine, below, prompt_ids
from .registry import Registry, Version

__all__ = ["AdapterPool", "Completion", "NoAdapter"]


class NoAdapter(TrainingError):
    """The team has no published adapter yet."""


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    adapter_version: int | None
    finish_reason: str  # "stop" (end token or stop sequence) or "length"
    # the adapter was less sure of its answer than its calibrated threshold and said it doesn't
    # know (only for versions trained with ``abstain_by_confidence``, at temperature 0)
    abstained: bool = False


class AdapterPool:
    def __init__(self, engine: Engine, registry: Registry, *, capacity: int = 8):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.engine = engine
        self.registry = registry
        self.capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()  # team -> "<team>@v<N>"
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded.values())

    def _activate(self, team_id: str) -> Version:
        """Under the lock: make the team's current adapter the active one; returns its version."""
        version = self.registry.current(team_id)
        if version is None:
            raise NoAdapter(f"team {team_id} has no published adapter yet: train it first")
        name = f"{team_id}@v{version.version}"
        if self._loaded.get(team_id) == name:
            self._loaded.move_to_end(team_id)
            self.hits += 1
        else:
            self.misses += 1
            stale = self._loaded.pop(team_id, None)  # an older version of this team
            if stale is not None:
                self.engine.unload(stale)
            self.engine.load(name, version.path)
            self._loaded[team_id] = name
            while len(self._loaded) > self.capacity:
                _, evicted = self._loaded.popitem(last=False)
                self.engine.unload(evicted)
        self.engine.model.set_adapter(name)
        return version

    def complete(self, team_id: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
                 stop: list[str] | None = None, seed: int | None = None, ignore_eos: bool = False) -> Completion:
        pieces: list[str] = []
        final: Completion | None = None
        for item in self.stream(team_id, question, max_tokens=max_tokens, temperature=temperature,
                                stop=stop, seed=seed, ignore_eos=ignore_eos):
            if isinstance(item, Completion):
                final = item
            else:
                pieces.append(item)
        assert final is not None
        return final

    def stream(self, team_id: str, question: str, *, max_tokens: int = 128, temperature: float = 0.0,
               stop: list[str] | None = None, seed: int | None = None,
               ignore_eos: bool = False) -> Iterator[str | Completion]:
        """Yield text pieces, then one ``Completion`` with the whole answer and the token counts."""
        tok = self.engine.base.tokenizer
        prompt = prompt_ids(tok, question)
        with self._lock:
            version = self._activate(team_id)
            # A version that abstains on confidence is only sure of its answer once it is whole:
            # its pieces are held back and sent as one (or replaced by "I don't know").
            threshold = abstain_threshold(version.manifest) if temperature <= 0 else None
            gen = _generate(self.engine.model, tok, prompt, max_tokens=max_tokens, temperature=temperature,
                            stop=stop or [], device=self.engine.base.device, seed=seed, ignore_eos=ignore_eos,
                            scored=threshold is not None)
            text, n, reason, confidence = "", 0, "length", None
            for item in gen:
                if isinstance(item, tuple):
                    text, n, reason, confidence = item
                elif threshold is None:
                    yield item
        abstained = below(confidence, threshold)
        if abstained:
            text, reason = DONT_KNOW, "stop"
        if threshold is not None and text:
            yield text
        yield Completion(text=text, prompt_tokens=len(prompt), completion_tokens=n,
                         adapter_version=version.version, finish_reason=reason, abstained=abstained)


def abstain_threshold(manifest: dict[str, Any]) -> float | None:
    """The confidence under which a version answers "I don't know": its calibrated threshold when
    it was trained with ``abstain_by_confidence``, else None."""
    if not manifest.get("config", {}).get("abstain_by_confidence"):
        return None
    return manifest.get("metrics", {}).get("abstain_below")


def _generate(model: Any, tok: Any, prompt: list[int], *, max_tokens: int, temperature: float,
              stop: list[str], device: str, seed: int | None,
              ignore_eos: bool = False, scored: bool = False) -> Iterator[str | tuple[str, int, str, float | None]]:
    """Token by token with the KV cache; yields text deltas, then (text, completion tokens, reason,
    and with ``scored`` the mean log-probability of the tokens chosen, the end token included; a
    full-vocabulary softmax per token, so only when a threshold needs it).

    Text that could still turn into a stop sequence is held back until it cannot. ``ignore_eos``
    (benchmarks) always generates ``max_tokens``, so runs compare equal work."""
    import torch

    end_ids = {i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")) if isinstance(i, int)}
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    hold = max((len(s) for s in stop), default=1) - 1
    ids: list[int] = []
    sent = 0
    text = ""
    reason = "length"
    past = None
    logprob, chosen = 0.0, 0
    next_input = torch.tensor([prompt], device=device)
    with torch.no_grad():
        for _ in range(max_tokens):
            out = model(input_ids=next_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            if temperature <= 0:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            if scored:
                logprob += float(torch.log_softmax(logits, dim=-1)[token])
                chosen += 1
            if token in end_ids and not ignore_eos:
                reason = "stop"
                break
            ids.append(token)
            text = tok.decode(ids, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s and s in text), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                break
            safe = len(text) - hold
            if safe > sent:
                yield text[sent:safe]
                sent = safe
            next_input = torch.tensor([[token]], device=device)
    if len(text) > sent:
        yield text[sent:]
    yield (text, len(ids), reason, logprob / max(chosen, 1) if scored else None)
