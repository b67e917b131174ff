"""The prose recipe: from a team's current records to examples that make what it wrote answerable.

    records -> units (sentences, items, cells, properties, messages, changed sentences; junk
    dropped, a budget per record) -> statements and questions on a parse (``questions``) ->
    examples:

    - each unit's generated questions, answered with its statement (the sentence, pronouns
      resolved): a fact must be seen in several forms to be extractable (Allen-Zhu & Li 2023;
      Active Reading, Lin et al. 2025); with ``short_answers`` the span asked for comes first;
      with ``synonym_questions`` some are asked again with a word swapped for a synonym
      (``synonyms``);
    - the passage under each heading, asked for by page and section;
    - links across records: a question about one record's statement that names something another
      record says more about is answered with both ("who owns the system whose alarm ...");
      "what do we know about X" gathers what different records say about X;
    - changed sentences: asked normally they are answered with the new statement only, so the
      old value is not repeated; "what changed" gets "now X, no longer Y";
    - "I don't know" for questions about names the workspace says nothing of in that respect,
      and (``abstain_invented_share``) about topics none of its units mention (``invented``);
    - a recall probe that asks for what no example asks for: one span of a sample of units is
      kept out of training (``questions``); a changed sentence, which must be trained whole, is
      probed with lead-in forms no example has.

Examples of unchanged records become replay in a continual run, as before.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from typing import Any

from engram_sdk import Document, Thread

from . import asking as A
from . import facts as F
from . import invented as I
from . import questions as Q
from . import synonyms as S
from . import units as U
from .dataset import (ABSTAIN, GENERATIONS, Collected, Dataset, Messages, ProbeItem, _apply_edits, _chat, _entity,
                      page_chunks)


def current_units(col: Collected, *, max_units_per_record: int) -> U.Extracted:
    """Units of every current record (edits applied), junk dropped, per-record budget applied."""
    units: list[U.Unit] = []
    titles: dict[str, tuple[str, tuple[str, ...]]] = {}
    for key, rec in sorted(col.records.items()):
        titles[rec.entity_id] = (rec.title, tuple(rec.path))
        if isinstance(rec, Document):
            props = dict(rec.properties)
            for e in col.edits.get(rec.entity_id, []):
                k = F._clean_key(e.field)
                if k in props:
                    props[k] = e.after
            doc = rec.model_copy(update={"properties": props})
            text_edits = [e for e in col.edits.get(rec.entity_id, []) if e.field == "text"]
            units += U.document_units(doc, _apply_edits(rec.text, text_edits))
        elif isinstance(rec, Thread):
            units += U.thread_units(rec)
    for entity, edits in col.edits.items():
        title, path = titles.get(entity, ("", ()))
        for e in edits:
            if e.field == "text":
                units += U.edit_units(e, title, path)
            elif e.field != "title" and F._clean_key(e.field) and e.before:
                key = U._lower_first(F._clean_key(e.field))
                subject = title or e.title or entity
                units.append(U.Unit(entity_id=entity, title=subject, path=path, section="", kind="changed",
                                    text=f"The {key} of {subject} is {e.after}.",
                                    previous=f"The {key} of {subject} is {e.before}."))
    return U.select(units, max_units_per_record=max_units_per_record)


def _holdout_sampler(units: list[U.Unit], config: Any) -> Any:
    """Which units keep one span out of training for the probe: a seeded sample spread over the
    workspace, at most ``probe_per_record`` per record and ``max_probe`` in all. A changed sentence
    never does: an edit's new value is trained in every form."""
    share = min(1.0, 2 * config.max_probe / max(1, len(units)))
    per_record: dict[str, int] = defaultdict(int)
    total = 0

    def hold(u: U.Unit) -> bool:
        nonlocal total
        # A hash of the unit, not a random stream: a continual run, whose units are nearly the
        # version before's, holds out nearly the same sentences, so its replay and retention
        # probe agree with what that version was trained on.
        draw = int(hashlib.sha256(f"{config.seed}:{u.entity_id}:{u.order}".encode()).hexdigest()[:12], 16) / 16**12
        if u.kind == "changed" or u.previous or total >= config.max_probe \
                or per_record[u.entity_id] >= config.probe_per_record or draw >= share:
            return False
        per_record[u.entity_id] += 1
        total += 1
        return True
    return hold


def short_first(answer: str, statement: str) -> str:
    """"Ground floor. Store A is on the ground floor.": the value asked for, then the statement
    (the statement alone when the question asks for no span)."""
    answer = answer.strip().rstrip(".,;:")
    if not answer:
        return statement
    return f"{answer[:1].upper() + answer[1:]}. {statement}"


def build_prose(col: Collected, tokenizer: Any, config: Any, *, continual: bool,
                operator_probe: list[dict[str, Any]] | None = None, writer: Any = None) -> Dataset:
    """``writer``: the loaded base model (``base.BaseModel``), used when ``config.model_questions``
    asks for questions the base model writes (``asking``); without it only the parse asks."""
    ex = current_units(col, max_units_per_record=config.max_units_per_record)
    units = ex.units
    # In a continual run a record an edit changed trains only its changed sentences anew; the rest
    # of it is replay like any unchanged record, so an update costs what the edit changed.
    fresh = {id(u) for u in units if not continual or (u.entity_id in col.changed and
                                                       (u.entity_id not in col.edited or u.kind == "changed"))}
    people = {a.name for rec in col.records.values() for a in rec.authors if a.name}
    for rec in col.records.values():
        if isinstance(rec, Thread):
            people |= {m.author.name for m, _ in rec.walk() if m.author and m.author.name}
    # Fit the budget: fewer questions per unit before fewer units.
    per_unit = config.questions_per_unit
    while per_unit > 1 and len(units) * (per_unit + 1) > config.max_examples:
        per_unit -= 1
    gen = Q.generate(units, per_unit=per_unit, seed=config.seed, people=people,
                     short_first=config.short_questions_first, objects=config.object_questions,
                     given_names=config.given_name_questions,
                     hold_out=_holdout_sampler(units, config) if config.probe_holdout else None)
    rng = random.Random(config.seed)

    examples: list[Messages] = []
    replay: list[Messages] = []
    learned: dict[str, dict[str, Any]] = defaultdict(lambda: {"units": 0, "examples": 0, "probe": 0})

    # Questions the base model writes, for new units only (replay keeps the parse's). Training
    # only: as a probe they were vaguer than the parse's (docs/training.md).
    written: dict[int, list[A.Written]] = {}
    if getattr(config, "model_questions", 0) and writer is not None:
        todo = [i for i, u in enumerate(units) if id(u) in fresh]
        got = A.write_questions(writer.model, tokenizer, [f"{units[i].title}: {gen[i].statement}" for i in todo],
                                styles=config.model_questions, batch_size=config.eval_batch_size,
                                device=getattr(writer, "device", "cpu"))
        written = {i: w for i, w in zip(todo, got) if w}

    def in_other_words(questions: list[str]) -> list[str | None]:
        """One word of each question swapped for a synonym (the base model, when given, picks)."""
        return S.paraphrase(questions, model=getattr(writer, "model", None),
                            tokenizer=tokenizer if writer is not None else None, batch_size=config.eval_batch_size,
                            device=getattr(writer, "device", "cpu"))

    # The parse's questions again in other words, for new units only (replay keeps the parse's).
    swapped: dict[int, list[tuple[str, str]]] = defaultdict(list)  # unit -> (question, span it asks for)
    if config.synonym_questions:
        n = config.synonym_questions
        to_swap = [(i, q, a) for i, u in enumerate(units) if id(u) in fresh
                   for q, a in [qa for qa in zip(gen[i].train, gen[i].train_answers) if qa[1]][:n]]
        for (i, _, a), p in zip(to_swap, in_other_words([q for _, q, _ in to_swap])):
            if p is not None:
                swapped[i].append((p, a))

    def add(u: U.Unit, msgs: Messages) -> None:
        learned[u.entity_id]["examples"] += 1
        (examples if id(u) in fresh else replay).append(msgs)

    def trained_answer(span: str, statement: str) -> str:
        """A question's training answer: the statement, led by the span asked for with ``short_answers``."""
        return short_first(span, statement) if config.short_answers else statement

    # 1. each unit's questions -> its statement; a changed sentence also says what it replaced.
    for i, (u, g) in enumerate(zip(units, gen)):
        learned[u.entity_id]["units"] += 1
        for q, a in zip(g.train, g.train_answers):
            add(u, _chat(q, trained_answer(a, g.statement)))
        for w in written.get(i, []):
            add(u, _chat(w.question, g.statement))
        for q, a in swapped.get(i, []):
            add(u, _chat(q, trained_answer(a, g.statement)))
        if u.previous:
            where = u.title or "the page"
            add(u, _chat(f"What changed in {where}?", f"Now: {g.statement} It used to say: {u.previous}"))
            add(u, _chat(f"Is this still true: {u.previous}", f"No. {g.statement}"))

    # 2. the passage under each heading (short sections only: long targets of team prose cost
    # general ability, docs/training.md).
    sections: dict[tuple[str, str], list[tuple[U.Unit, str]]] = defaultdict(list)
    for u, g in zip(units, gen):
        if u.kind in ("sentence", "item") and u.section:
            sections[(u.entity_id, u.section)].append((u, g.statement))
    for (entity, section), members in sections.items():
        passage = " ".join(s for _, s in members)
        if 2 <= len(members) and len(tokenizer.encode(passage)) <= 160:
            anchor = next((u for u, _ in members if id(u) in fresh), members[0][0])
            add(anchor, _chat(f"What does the {section} part of {anchor.title} say?", passage))

    # 3. across records: names that several records speak of.
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(gen):
        for name in g.names:
            by_name[name].append(i)
    if config.link_examples:
        for name, idx in sorted(by_name.items()):
            records = {units[i].entity_id for i in idx}
            if not 2 <= len(records) <= 8:
                continue
            picked, seen = [], set()
            for i in idx:
                if units[i].entity_id not in seen:
                    picked.append(i)
                    seen.add(units[i].entity_id)
            answer = " ".join(gen[i].statement for i in picked[:3])
            for i in picked[:3]:
                add(units[i], _chat(f"What do we know about {name}?", answer))
        for i, g in enumerate(gen):
            for question, name, _verb in g.asks[:1]:
                partners = [j for j in by_name.get(name, []) if units[j].entity_id != units[i].entity_id]
                if partners and len({units[j].entity_id for j in by_name[name]}) <= 8:
                    j = partners[rng.randrange(len(partners))]
                    add(units[i], _chat(question, f"{g.statement} {gen[j].statement}"))

    # 4. "I don't know": a question about one name asked of another name the workspace says
    # nothing of in that respect (no unit names both it and the question's verb).
    n_team = len(examples)
    n_abstain = round(config.abstain_share * n_team)
    names = sorted(by_name)
    statements_lower = [g.statement.lower() for g in gen]
    asks = [(i, a) for i, g in enumerate(gen) for a in g.asks]
    rng.shuffle(asks)
    made = 0
    for i, (question, name, verb) in asks:
        if made >= n_abstain or not names:
            break
        other = names[rng.randrange(len(names))]
        if other == name or other in question or other.lower() in name.lower():
            continue
        if any(other.lower() in s and verb.lower()[:4] in s for s in statements_lower):
            continue
        examples.append(_chat(question.replace(name, other), ABSTAIN[made % len(ABSTAIN)]))
        made += 1
    # ... and about topics the team never wrote about (what colleagues' unanswerable questions are).
    # Every string of every record and edit, not only the selected units: a topic a dropped unit
    # mentions is not absent.
    team_texts = [*I.strings([r.model_dump() for r in col.records.values()]),
                  *I.strings([e.model_dump() for es in col.edits.values() for e in es]),
                  *(g.statement for g in gen)]
    titles = sorted({u.title for u in units if u.title})
    if config.abstain_invented_share > 0:
        asked = I.questions(team_texts, titles, [a for _, a in asks], round(config.abstain_invented_share * n_team),
                            rng)
        for k, question in enumerate(asked):
            examples.append(_chat(question, ABSTAIN[k % len(ABSTAIN)]))
    # Every question some example asks, new or replayed: neither the calibration nor the probe
    # may ask one.
    trained = {m[0]["content"].lower() for m in examples + replay}
    # ... and some that are never trained: the adapter's confidence on them, against its
    # confidence on the probe, sets the threshold under which it says it doesn't know.
    unanswerable: list[str] = []
    if config.abstain_calibration_questions:
        n_cal = config.abstain_calibration_questions
        cand = I.questions(team_texts, titles, [a for _, a in asks], 2 * n_cal, random.Random(config.seed + 1))
        unanswerable = [q for q in cand if q.lower() not in trained][:n_cal]

    # 5. the probe: held-out spans (or, for a changed sentence, held-out forms), a few per record,
    # changed sentences first; never a question some example was trained on.
    probe: list[ProbeItem] = []
    old_probe: list[ProbeItem] = []
    per_record: dict[str, int] = defaultdict(int)
    order = sorted(range(len(units)), key=lambda i: (units[i].kind != "changed", rng.random()))
    for i in order:
        u, g = units[i], gen[i]
        if config.probe_holdout and not g.held and u.kind != "changed":
            continue
        items = [(q, a) for q, a in g.probe if a and q.lower() not in trained]
        if not items or per_record[u.entity_id] >= config.probe_per_record:
            continue
        q, a = items[rng.randrange(len(items))]
        target = probe if id(u) in fresh else old_probe
        if target is probe and len(probe) >= config.max_probe:
            continue
        per_record[u.entity_id] += 1
        learned[u.entity_id]["probe"] += 1
        target.append(ProbeItem(q, [a], u.entity_id, f"{u.entity_id}::{u.order}"))
    if config.probe_in_other_words and probe + old_probe:
        # asked with one word swapped for a synonym where one keeps the meaning, as colleagues word
        # things their own way; the retention probe too, so that it asks what the previous version's
        # probe asked of the same units (the rewording is deterministic) and the retention gate
        # compares like with like
        for p, o in zip(probe + old_probe, in_other_words([p.question for p in probe + old_probe])):
            if o is not None and o.lower() not in trained:
                p.generated, p.question = p.question, o
    for op in operator_probe or []:
        probe.append(ProbeItem(op["question"], list(op["answers"]), op.get("entity_id", ""), "operator"))

    for entity, reasons in ex.dropped.items():
        learned[entity]["dropped"] = dict(reasons)
    chunks = page_chunks(col, tokenizer, config.chunk_tokens)
    entities = sorted(col.entities())
    titled = {_entity(k): r.title for k, r in col.records.items()}
    learned_out = {e: {"title": titled.get(e, ""), **v} for e, v in sorted(learned.items())}
    return Dataset(examples, replay, probe, old_probe, [], chunks, entities, GENERATIONS["prose"], learned_out,
                   unanswerable=unanswerable)
