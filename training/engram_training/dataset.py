"""From one team's signed events to training examples and a recall probe.

``collect`` reads the team's events in store order and keeps only what may be trained on:

- the signature verifies with a key trusted *for this team* (anything else is counted by reason,
  never used);
- the record is visible to the whole team (a record restricted to a few people is left out unless
  ``allow_restricted``), so the adapter never tells a member what they could not open;
- the entity is not deleted: a Tombstone removes it (and a later upsert brings it back).

Edits are applied to the record they change (the page text and properties take the new value)
and become before -> after examples, so the adapter learns the new value over the old one.

``build`` turns the current records into chat examples (lists of messages; the loss is on the
assistant turns): page chunks with title and path, fact questions in several phrasings, thread
conversations, edit notes; and a probe of held-out phrasings. Generation is deterministic
extraction (see ``facts``); the manifest says so.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engram_sdk import Document, Edit, EventStore, SignatureError, Thread, Tombstone

from . import facts as F
from .infer import DONT_KNOW

GENERATIONS = {"facts": "deterministic-extraction/1", "prose": "prose-units/3"}
ABSTAIN = ["I don't know. Nothing in the team's notes says that.", DONT_KNOW]


@dataclass
class Collected:
    """The team's current, trainable state as of ``watermark``."""

    team_id: str
    records: dict[str, Document | Thread] = field(default_factory=dict)  # by entity id (+ part)
    edits: dict[str, list[Edit]] = field(default_factory=dict)  # by entity id, in order
    deleted: set[str] = field(default_factory=set)  # entity ids tombstoned and not re-created
    changed: set[str] = field(default_factory=set)  # entity ids touched after the old watermark
    edited: set[str] = field(default_factory=set)  # of those, the ones an Edit changed (not new)
    rejected: Counter = field(default_factory=Counter)  # signature failure reason -> count
    restricted_skipped: int = 0
    events_read: int = 0
    events_used: int = 0
    watermark: str | None = None  # store cursor after the last event read

    def entities(self) -> set[str]:
        return {_entity(k) for k in self.records} | set(self.edits)

    def stats(self) -> dict[str, Any]:
        return {
            "events_read": self.events_read,
            "events_used": self.events_used,
            "rejected": dict(self.rejected),
            "restricted_skipped": self.restricted_skipped,
            "records": len(self.records),
            "edits": sum(len(v) for v in self.edits.values()),
            "deleted_entities": len(self.deleted),
            "changed_entities": len(self.changed),
        }


def _entity(key: str) -> str:
    return key.split("#part-")[0]


def collect(store: EventStore, team_id: str, *, since: str | None = None, allow_restricted: bool = False) -> Collected:
    """Read all of ``team_id``'s events; those after ``since`` (a store cursor) mark their entity
    as changed. Earlier events are read too: they give the current state and the replay set."""
    trusted = store.trusted_keys()  # every team's keys, so a key of another team fails as such
    out = Collected(team_id=team_id, watermark=since)
    new_from = None if since is None else {e.event_id for e in store.iter_events(team_id, after=since)}
    cursor = None
    while True:
        page = store.read(team_id, after=cursor, limit=500)
        if not page.events:
            break
        cursor = page.cursor
        for stored in page.events:
            out.events_read += 1
            try:
                trusted.verify(stored.envelope)
            except SignatureError as exc:
                out.rejected[exc.reason] += 1
                continue
            event = stored.event
            if event.teamid != team_id:  # the store partitions by team; never trust it blindly
                out.rejected["wrong_team"] += 1
                continue
            record = event.record
            entity = record.entity_id
            is_new = new_from is None or stored.event_id in new_from
            if isinstance(record, Tombstone):
                out.records = {k: v for k, v in out.records.items() if _entity(k) != entity}
                out.edits.pop(entity, None)
                out.deleted.add(entity)
                out.changed.discard(entity)
                out.events_used += 1
                continue
            if record.restricted and not allow_restricted:
                # Restricted now: whatever was visible before must go too.
                out.restricted_skipped += 1
                out.records = {k: v for k, v in out.records.items() if _entity(k) != entity}
                out.edits.pop(entity, None)
                continue
            out.deleted.discard(entity)
            out.events_used += 1
            if is_new:
                out.changed.add(entity)
            if isinstance(record, Edit):
                out.edits.setdefault(entity, []).append(record)
                if is_new and new_from is not None:
                    out.edited.add(entity)
            else:
                out.records[record.subject] = record
    out.watermark = cursor or since
    return out


# --- examples -----------------------------------------------------------------------------------------

Messages = list[dict[str, str]]


@dataclass
class ProbeItem:
    question: str
    answers: list[str]
    entity_id: str
    fact: str  # Fact.ident, or "operator" for an operator's own question
    generated: str | None = None  # the question as generated, when ``question`` asks it in other words

    def to_dict(self) -> dict[str, Any]:
        out = {"question": self.question, "answers": self.answers, "entity_id": self.entity_id, "fact": self.fact}
        if self.generated is not None:
            out["generated"] = self.generated
        return out


@dataclass
class Dataset:
    examples: list[Messages]  # team examples for changed entities
    replay: list[Messages]  # team examples for unchanged entities (continual replay)
    probe: list[ProbeItem]  # held-out phrasings of the changed entities' facts
    old_probe: list[ProbeItem]  # held-out phrasings of unchanged entities' facts (retention)
    facts: list[F.Fact]
    chunks: list[dict[str, str]]  # {"entity_id", "title", "text"} for the retrieval baseline
    entities: list[str]
    generation: str = GENERATIONS["facts"]
    learned: dict[str, dict[str, Any]] = field(default_factory=dict)  # entity -> what was learned from it
    # questions about topics the team never wrote about, none of them trained: they calibrate
    # the adapter's abstention threshold (``evaluate.calibrate_abstention``)
    unanswerable: list[str] = field(default_factory=list)

    def digest(self) -> str:
        body = json.dumps([self.examples, self.replay], sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:16]

    def stats(self) -> dict[str, Any]:
        return {
            "examples": len(self.examples),
            "replay_examples": len(self.replay),
            "facts": len(self.facts),
            "probe_questions": len(self.probe),
            "retention_questions": len(self.old_probe),
            "entities": len(self.entities),
            "generation": self.generation,
        }


def current_facts(col: Collected) -> list[F.Fact]:
    """Every fact of the current records, with edits applied (an edit's value wins)."""
    by_id: dict[str, F.Fact] = {}
    for key, rec in col.records.items():
        if isinstance(rec, Document):
            found = F.facts_in_text(rec.text, rec.title or key, rec.entity_id)
            found += [F.Fact(rec.title or key, k, v, rec.entity_id) for k, v in rec.properties.items()
                      if F._clean_key(k)]
        else:
            found = []
            for msg, _ in rec.walk():
                found += F.facts_in_text(msg.text, rec.title or key, rec.entity_id, sentence=True)
        for f in found:
            by_id[f.ident] = f
    titles = {_entity(k): r.title for k, r in col.records.items()}
    for entity, edits in col.edits.items():
        for e in edits:
            key = F._clean_key(e.field)
            if key is None or e.field in ("text", "title"):
                continue
            subject = titles.get(entity) or e.title or entity
            fact = F.Fact(subject, key, e.after, entity, previous=e.before)
            by_id[fact.ident] = fact
    return sorted(by_id.values(), key=lambda f: f.ident)


def _apply_edits(text: str, edits: list[Edit]) -> str:
    for e in edits:
        if e.before and e.before in text:
            text = text.replace(e.before, e.after)
    return text


def _page_text(doc: Document, edits: list[Edit]) -> str:
    props = {k: v for k, v in doc.properties.items()}
    for e in edits:
        key = F._clean_key(e.field)
        if key in props:
            props[key] = e.after
    lines = [doc.text.strip()] + [f"- {k}: {v}" for k, v in props.items()]
    return _apply_edits("\n".join(x for x in lines if x), edits)


def page_chunks(col: Collected, tokenizer: Any, max_tokens: int) -> list[dict[str, str]]:
    """Documents (with edits applied) and threads as text chunks of at most ``max_tokens`` tokens,
    each headed by its title and path."""
    out = []
    for key, rec in sorted(col.records.items()):
        edits = col.edits.get(rec.entity_id, [])
        if isinstance(rec, Document):
            body = _page_text(rec, edits)
        else:
            body = "\n".join(f"{_who(m)}: {m.text}" for m, _ in rec.walk())
        head = " / ".join([*rec.path, rec.title]) if rec.title else " / ".join(rec.path)
        for piece in _split_tokens(body, tokenizer, max_tokens - len(tokenizer.encode(head)) - 4):
            out.append({"entity_id": rec.entity_id, "title": rec.title, "head": head, "text": f"{head}\n{piece}"})
    return out


def _who(m: Any) -> str:
    return (m.author.name or m.author.id) if m.author else "someone"


def _split_tokens(text: str, tokenizer: Any, max_tokens: int) -> list[str]:
    """Split at line boundaries into pieces of at most ``max_tokens`` tokens (a longer line is cut)."""
    max_tokens = max(max_tokens, 16)
    pieces, cur = [], []
    for line in text.splitlines():
        ids = tokenizer.encode(line)
        while len(ids) > max_tokens:
            if cur:
                pieces.append("\n".join(cur))
                cur = []
            pieces.append(tokenizer.decode(ids[:max_tokens]))
            ids = ids[max_tokens:]
            line = tokenizer.decode(ids)
        if cur and len(tokenizer.encode("\n".join(cur + [line]))) > max_tokens:
            pieces.append("\n".join(cur))
            cur = []
        cur.append(line)
    if cur and "\n".join(cur).strip():
        pieces.append("\n".join(cur))
    return pieces


def build(col: Collected, tokenizer: Any, config: Any, *, continual: bool,
          operator_probe: list[dict[str, Any]] | None = None, writer: Any = None) -> Dataset:
    """Chat examples and probes for the collected state. In a continual run only changed entities
    give new examples and probe questions; the others give replay examples and retention questions."""
    if config.generation == "prose":
        from .prose import build_prose

        return build_prose(col, tokenizer, config, continual=continual, operator_probe=operator_probe,
                           writer=writer)
    all_facts = current_facts(col)
    chunks = page_chunks(col, tokenizer, config.chunk_tokens)
    changed = (lambda e: e in col.changed) if continual else (lambda e: True)
    examples: list[Messages] = []
    replay: list[Messages] = []
    probe: list[ProbeItem] = []
    old_probe: list[ProbeItem] = []

    taught: set[str] = set()

    def add(entity: str, msgs: Messages) -> None:
        taught.add(entity)
        (examples if changed(entity) else replay).append(msgs)

    for fact in all_facts:
        train_q, held_q = F.phrasings(fact, seed=config.seed, n_train=config.train_questions_per_fact,
                                      n_holdout=config.holdout_per_fact)
        for q in train_q:
            add(fact.entity_id, _chat(q, F.answers(fact, seed=config.seed, question=q)))
        for q, a in F.statements(fact)[: config.statements_per_fact]:
            add(fact.entity_id, _chat(q, a))
        if fact.previous:
            note = f"The {fact.key} of {fact.subject} changed from {fact.previous} to {fact.value}."
            add(fact.entity_id, _chat(f"Has the {fact.key} of {fact.subject} changed?", note))
            add(fact.entity_id, _chat(f"Is the {fact.key} of {fact.subject} still {fact.previous}?",
                                      f"No. {note}"))
        items = [ProbeItem(q, [fact.value], fact.entity_id, fact.ident) for q in held_q]
        (probe if changed(fact.entity_id) else old_probe).extend(items)
    for key, rec in sorted(col.records.items()):
        if isinstance(rec, Thread):
            for root in rec.messages:
                if root.text.strip() and root.replies:
                    answer = "\n".join(f"{_who(m)}: {m.text}" for m, _ in list(root.walk())[1:])
                    add(rec.entity_id, _chat(root.text, answer))
    # Page chunks ("what does <title> say?" -> the text) are left out by default: they cost general
    # ability without adding recall of facts. A record nothing else was made of (prose with no
    # `Key: value` line) still becomes chunk examples, so no team content goes untrained.
    untaught = {c["entity_id"] for c in chunks} - taught
    for c in chunks:
        if config.page_examples or c["entity_id"] in untaught:
            add(c["entity_id"], _chat(f'What does "{c["head"]}" say?', c["text"].split("\n", 1)[-1]))
    for op in operator_probe or []:
        probe.append(ProbeItem(op["question"], list(op["answers"]), op.get("entity_id", ""), "operator"))
    entities = sorted(col.entities())
    return Dataset(examples, replay, probe, old_probe, all_facts, chunks, entities, GENERATIONS["facts"])


def _chat(user: str, assistant: str) -> Messages:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
