""""I don't know" examples about topics a team never wrote about.

The workspace-name abstention (``prose``, step 4) asks about one of the team's names in a respect
the team says nothing of; colleagues' unanswerable questions are mostly about things that are not
in the workspace at all ("who runs the Nairobi office?"). These examples ask about topics from a
shipped list (``data/invented_topics.txt``, generic and hand-written) that are provably absent:
none of a topic's content words occurs anywhere in the team's units. They use the question forms
the parse-based generator trains on (direct, embedded, topic, and the team's own questions with
their name swapped for an absent one), so the form alone never gives the answer away.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from . import questions as Q

# (direct question, embedded clause) per kind of topic; the embedded clause goes into
# ``questions.TRAIN_EMBEDDED`` like a parsed question's.
THING = [("Who is in charge of {t}?", "who is in charge of {t}"),
         ("What did we decide about {t}?", "what we decided about {t}"),
         ("How much did {t} cost?", "how much {t} cost"),
         ("Who approved {t}?", "who approved {t}"),
         ("What is the status of {t}?", "what the status of {t} is"),
         ("When did we last review {t}?", "when we last reviewed {t}"),  # no verb agrees with {t}
         ("Who should I ask about {t}?", "who I should ask about {t}")]
PERSON = [("What does {t} work on?", "what {t} works on"),
          ("Who does {t} report to?", "who {t} reports to"),
          ("When did {t} join the team?", "when {t} joined the team"),
          ("Where is {t} based?", "where {t} is based"),
          ("What is {t} responsible for?", "what {t} is responsible for")]
NAME = [("Who owns {t}?", "who owns {t}"),
        ("What is {t} used for?", "what {t} is used for"),
        ("When does {t} go live?", "when {t} goes live"),
        ("How much does {t} cost?", "how much {t} costs"),
        ("Who maintains {t}?", "who maintains {t}")]
FORMS = {"thing": THING, "person": PERSON, "name": NAME}


@lru_cache(maxsize=1)
def topics() -> tuple[tuple[str, str], ...]:
    """(kind, phrase) for every line of the shipped list."""
    text = resources.files("engram_training").joinpath("data/invented_topics.txt").read_text()
    out = []
    for line in text.splitlines():
        kind, sep, phrase = line.partition(":")
        if sep and not line.startswith("#") and kind.strip() in FORMS and phrase.strip():
            out.append((kind.strip(), phrase.strip()))
    return tuple(out)


def strings(obj: object) -> Iterable[str]:
    """Every string inside nested dicts and lists (a record's ``model_dump()``)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings(v)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def content_words(phrase: str) -> set[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return {w for w in _words(phrase) if w not in STOP_WORDS and len(w) > 2}


def _variants(word: str) -> set[str]:
    # "lockers" must count as present when the team wrote "locker", and the other way round.
    out = {word, word + "s", word + "es"}
    if word.endswith("es"):
        out.add(word[:-2])
    if word.endswith("s"):
        out.add(word[:-1])
    return out


def absent(candidates: Iterable[tuple[str, str]], team_texts: Iterable[str]) -> list[tuple[str, str]]:
    """The candidates none of whose content words (or their singular/plural) the team's texts
    contain."""
    seen = {w for text in team_texts for w in _words(text)}
    return [(kind, phrase) for kind, phrase in candidates
            if content_words(phrase) and not any(_variants(w) & seen for w in content_words(phrase))]


def questions(team_texts: list[str], titles: list[str], asks: list[tuple[str, str, str]], n: int,
              rng: random.Random) -> list[str]:
    """Up to ``n`` distinct questions about absent topics, the kinds of question taken in turn:
    a topic's direct or embedded question, a topic question ("What do we know about ..."), and
    one of the team's own questions (``asks``) with its name swapped for an absent name."""
    if n <= 0:
        return []
    pool = absent(topics(), team_texts)
    if not pool:
        return []
    names = [p for k, p in pool if k in ("person", "name")]

    def direct() -> str:
        kind, t = pool[rng.randrange(len(pool))]
        q, emb = FORMS[kind][rng.randrange(len(FORMS[kind]))]
        if rng.random() < 0.5:
            return q.format(t=t)
        return Q.TRAIN_EMBEDDED[rng.randrange(len(Q.TRAIN_EMBEDDED))].format(e=emb.format(t=t))

    def topic() -> str:
        _kind, t = pool[rng.randrange(len(pool))]
        form = Q.TOPIC_TRAIN[rng.randrange(len(Q.TOPIC_TRAIN))]
        title = titles[rng.randrange(len(titles))] if titles else "the page"
        return form.format(c=t, t=title)

    def swapped() -> str | None:
        if not asks or not names:
            return None
        question, name, _verb = asks[rng.randrange(len(asks))]
        return question.replace(name, names[rng.randrange(len(names))])

    makers = [direct, topic, swapped]
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n and tries < 20 * n:
        q = makers[tries % len(makers)]()
        tries += 1
        if q and q.lower() not in seen:
            seen.add(q.lower())
            out.append(q)
    return out
