"""Inference: the base model with one team's adapter, or several adapters switched by name.

This is the one module that answers questions; ``engram query``, evaluation and the server's
multi-adapter engine all go through ``Engine``. Prompts use the model's chat template with a short
fixed system prompt (the template would otherwise add its own ~20-token default).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import BaseModel

SYSTEM = "Answer briefly."
# what an adapter says when its own answer scores below its calibrated threshold; one of the
# phrasings its "I don't know" training examples use (``dataset.ABSTAIN``)
DONT_KNOW = "I don't know; the team's notes don't say."


def below(confidence: float | None, threshold: float | None) -> bool:
    """Whether an answer of this confidence is replaced by ``DONT_KNOW`` (no threshold: never)."""
    return threshold is not None and confidence is not None and confidence < threshold


def prompt_ids(tokenizer: Any, question: str, context: str | None = None) -> list[int]:
    user = question if context is None else f"Use these notes to answer.\n\n{context}\n\nQuestion: {question}"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], max_len: int) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its loss mask (1 on assistant tokens, including the
    end token that teaches the model to stop). The mask is built by position: the pad token is the
    end token, so masking by id would hide every end token."""
    full = [{"role": "system", "content": SYSTEM}, *messages]
    ids: list[int] = []
    mask: list[int] = []
    for i in range(1, len(full)):
        upto = tokenizer.apply_chat_template(full[: i + 1], tokenize=True, add_generation_prompt=False)
        upto = list(upto["input_ids"] if hasattr(upto, "keys") else upto)
        if upto[: len(ids)] != ids:  # templates are prefix-stable for ChatML; fall back if not
            upto = ids + upto[len(ids):]
        new = upto[len(ids):]
        if full[i]["role"] == "assistant":
            # The template's "<|im_start|>assistant\n" header is prompt, not target.
            header = tokenizer.apply_chat_template(full[:i], tokenize=True, add_generation_prompt=True)
            header = list(header["input_ids"] if hasattr(header, "keys") else header)
            n_head = max(0, len(header) - len(ids))
            mask += [0] * n_head + [1] * (len(new) - n_head)
        else:
            mask += [0] * len(new)
        ids = upto
    # Drop the template's trailing newline after the last end token from the target.
    if ids and tokenizer.decode(ids[-1:]).strip() == "" and len(ids) > 1:
        mask[-1] = 0
    return ids[:max_len], mask[:max_len]


@dataclass
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    adapter_version: int | None = None
    # mean log-probability of the answer's tokens (asked for with ``confidence=True``)
    confidence: float | None = None
    abstained: bool = False  # the adapter's answer fell below its abstention threshold


def generate(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int,
             batch_size: int = 16, device: str = "cpu", confidence: bool = False) -> list[tuple[Any, ...]]:
    """Greedy answers for token-id prompts, batched with left padding; (text, completion tokens),
    and with ``confidence`` the mean log-probability the model gave its own answer's tokens (end
    token included: stopping is part of the answer)."""
    import torch

    out: list[tuple[Any, ...]] = [("", 0)] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            p = prompts[i]
            ids[row, width - len(p):] = torch.tensor(p)
            att[row, width - len(p):] = 1
        with torch.no_grad():
            gen = model.generate(
                input_ids=ids.to(device), attention_mask=att.to(device), max_new_tokens=max_new_tokens,
                do_sample=False, pad_token_id=pad, eos_token_id=eos,
                output_scores=confidence, return_dict_in_generate=True,
            )
        seqs = gen.sequences
        if confidence:  # (rows, steps): log-probability of each chosen token
            steps = torch.stack([torch.log_softmax(s.float(), dim=-1) for s in gen.scores], dim=1)
            chosen = steps.gather(2, seqs[:, width:].unsqueeze(-1).to(steps.device)).squeeze(-1)
        for row, i in enumerate(idx):
            new = seqs[row, width:].tolist()
            n = new.index(eos) if eos in new else len(new)
            text = tokenizer.decode(new[:n], skip_special_tokens=True).strip()
            if confidence:
                upto = min(len(new), n + 1)
                out[i] = (text, n, float(chosen[row, :upto].mean()) if upto else 0.0)
            else:
                out[i] = (text, n)
    return out


class Engine:
    """One base model with any number of team adapters loaded by name ("<team>@v<N>").

    ``answer(question, adapter=None)`` uses the base model alone. Not thread-safe across
    adapters: calls are serialised with a lock (peft switches the active adapter globally).
    """

    def __init__(self, base: BaseModel):
        self.base = base
        self.model: Any = base.model
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def load(self, name: str, directory: Path) -> None:
        from peft import PeftModel

        with self._lock:
            if name in self._loaded:
                return
            if not self._loaded:
                self.model = PeftModel.from_pretrained(self.base.model, str(directory), adapter_name=name)
            else:
                self.model.load_adapter(str(directory), adapter_name=name)
            self.model.eval()
            self._loaded.add(name)

    def close(self) -> None:
        """Take every adapter out of the base model again (it is shared by the whole process)."""
        with self._lock:
            if self._loaded:
                self.base.model = self.model.unload()
                self.base.model.eval()
                self.model = self.base.model
                self._loaded.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def unload(self, name: str) -> None:
        with self._lock:
            if name in self._loaded:
                self.model.delete_adapter(name)
                self._loaded.discard(name)

    def answer_many(self, questions: list[str], *, adapter: str | None = None, contexts: list[str] | None = None,
                    max_new_tokens: int = 64, batch_size: int = 16, confidence: bool = False,
                    abstain_below: float | None = None) -> list[Answer]:
        """Greedy answers. With ``abstain_below`` (an adapter's calibrated threshold, see
        ``evaluate.calibrate_abstention``) an answer the model is less sure of than that becomes
        "I don't know" (``Answer.abstained``; ``confidence`` keeps the score)."""
        tok = self.base.tokenizer
        confidence = confidence or abstain_below is not None
        kw = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "device": self.base.device,
              "confidence": confidence}
        prompts = [prompt_ids(tok, q, contexts[i] if contexts else None) for i, q in enumerate(questions)]
        if self.base.device == "cpu":
            from .base import set_threads

            set_threads(0)
        with self._lock:
            if adapter is None:
                if self._loaded:
                    with self.model.disable_adapter():
                        texts = generate(self.model, tok, prompts, **kw)
                else:
                    texts = generate(self.model, tok, prompts, **kw)
            else:
                if adapter not in self._loaded:
                    raise KeyError(f"adapter {adapter} is not loaded")
                self.model.set_adapter(adapter)
                texts = generate(self.model, tok, prompts, **kw)
        out = []
        for got, p in zip(texts, prompts):
            a = Answer(got[0], len(p), got[1], confidence=got[2] if confidence else None)
            if below(a.confidence, abstain_below):
                a.text, a.abstained = DONT_KNOW, True
            out.append(a)
        return out

    def answer(self, question: str, *, adapter: str | None = None, max_new_tokens: int = 64,
               abstain_below: float | None = None) -> Answer:
        return self.answer_many([question], adapter=adapter, max_new_tokens=max_new_tokens,
                                abstain_below=abstain_below)[0]
