"""Deterministic fact extraction, question phrasings, and the one scoring rule.

A *fact* is (subject, key, value): a ``Key: value`` line of a page (a bullet or a plain line),
a document property (a Notion property, a review-table cell), a ``Key: value`` sentence that opens
a message in a thread, or the new value of an Edit. The subject is the record's title.

Each fact is asked in several phrasings (``QUESTION_TEMPLATES``): a fact must be seen in several
phrasings to be recalled (Allen-Zhu & Li 2023; measured here: 0.41 -> 0.91 held-out recall).
Some phrasings of every fact are held out of training and become the recall probe.

Scoring (used for every number the trainer reports): an answer is correct when the normalised
expected value is contained in the normalised answer, on word boundaries. Normalising lowercases,
folds accents, drops punctuation (so "48,000" == "48000") and collapses whitespace.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass

_LINE = re.compile(r"^\s*(?:[-*\u2022]\s+)?(?P<key>[A-Za-z][A-Za-z0-9 '&/()-]{1,48}?)\s*:\s+(?P<value>\S.{0,150}?)\s*$")
_NOT_KEYS = {"http", "https", "note", "re", "fw", "fwd", "todo", "q", "a"}


@dataclass(frozen=True)
class Fact:
    subject: str  # the record's title
    key: str  # e.g. "Launch date"
    value: str  # e.g. "21 March 2027"
    entity_id: str  # which record it came from
    previous: str | None = None  # the value an Edit replaced

    @property
    def ident(self) -> str:
        return f"{self.entity_id}::{self.key.lower()}"


def _clean_key(key: str) -> str | None:
    key = key.strip()
    if key.lower().startswith("cell:"):
        key = key[5:].strip()
    if not key or key.lower() in _NOT_KEYS or len(key.split()) > 6:
        return None
    return key


def facts_in_text(text: str, subject: str, entity_id: str, *, sentence: bool = False) -> list[Fact]:
    """``Key: value`` lines of a text. With ``sentence`` (thread messages) the value stops at the
    first sentence or clause break: "Weekend on-call: Ravi, I swapped" gives "Ravi"."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        key, value = _clean_key(m["key"]), m["value"].strip()
        if sentence:
            value = re.split(r"(?<=[^\d])[.,;](?:\s|$)|\.\s", value)[0].strip()
        value = value.rstrip(".")
        if key and value and not value.startswith(("//", "http")):
            out.append(Fact(subject, key, value, entity_id))
    return out


# --- phrasings -------------------------------------------------------------------------------------

QUESTION_TEMPLATES = [
    "What is the {k} of {s}?",
    "{S}: what is the {k}?",
    "Tell me the {k} for {s}.",
    "Do you know the {k} of {s}?",
    "What {k} is recorded for {s}?",
    "I need the {k} for {s}. What is it?",
    "Which {k} does {s} have?",
    "Can you remind me what the {k} of {s} is?",
    "Quick question about {s}: what's the {k}?",
    "According to our workspace, what is the {k} of {s}?",
]
ANSWER_TEMPLATES = [
    "The {k} of {s} is {v}.",
    "{v}.",
    "{S}: the {k} is {v}.",
    "It is {v}.",
]
STATEMENT_TEMPLATES = [
    ("What do you know about the {k} of {s}?", "The {k} of {s} is {v}."),
    ("Remind me of a fact about {s}.", "For {s}, the {k} is {v}."),
]


def _fill(template: str, fact: Fact) -> str:
    key = fact.key if fact.key.isupper() or fact.key[:2].isupper() else fact.key[0].lower() + fact.key[1:]
    return template.format(k=key, s=fact.subject, S=fact.subject, v=fact.value)


def _rng(seed: int, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def phrasings(fact: Fact, *, seed: int, n_train: int, n_holdout: int) -> tuple[list[str], list[str]]:
    """(training questions, held-out questions) for one fact; the split depends only on the seed
    and the fact, so a rerun holds out the same questions."""
    order = list(QUESTION_TEMPLATES)
    _rng(seed, fact.ident).shuffle(order)
    held = order[:n_holdout]
    train = order[n_holdout : n_holdout + n_train]
    return [_fill(t, fact) for t in train], [_fill(t, fact) for t in held]


def answers(fact: Fact, *, seed: int, question: str) -> str:
    t = ANSWER_TEMPLATES[_rng(seed, fact.ident, question).randrange(len(ANSWER_TEMPLATES))]
    return _fill(t, fact)


def statements(fact: Fact) -> list[tuple[str, str]]:
    return [(_fill(q, fact), _fill(a, fact)) for q, a in STATEMENT_TEMPLATES]


# --- scoring -----------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"(?<=\d)[,.](?=\d{3}\b)", "", text)  # 48,000 -> 48000
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def is_correct(answer: str, expected: list[str]) -> bool:
    """Normalised containment on word boundaries: the scoring rule for every metric."""
    got = f" {normalize(answer)} "
    return any(f" {normalize(e)} " in got for e in expected if normalize(e))
