"""Knowledge units: what a team wrote, one statement at a time, with the context a reader needs.

A *unit* is one sentence of a paragraph, one list item, one table cell (stated as "the <column>
of <row> is <value>"), one document property, one sentence of a thread message, or one sentence
a text edit changed. Each keeps where it came from (record, title, path, section heading,
author, time) so that questions about it can name its context, and so the manifest can say what
was learned from each record.

Junk resistance happens here, before any example is made:

- near-identical prose (the same words once digits are masked: "Log line 17: routine reading")
  repeated three or more times in a record, and the same words in three or more records (a
  footer), is boilerplate and dropped; a statement written twice is kept once;
- each record contributes at most ``max_units_per_record`` units, the most informative first
  (names, numbers, dates), so one long page cannot crowd out the rest;
- a data source's schema (column names and types) is not content and yields nothing.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from engram_sdk import Document, Edit, Thread

from . import facts as F

# Lines that carry no statement: rules, code fences, placeholders the Notion renderer writes for
# links, child pages, media and unknown blocks.
_SKIP_LINE = re.compile(r"^\s*(?:---+|```.*|\$\$.*|\[(?:page|database|link to|bookmark|embed|link_preview|image|video|"
                        r"pdf|file|audio|meeting notes|unsupported block|synced block)[^\]]*\].*)\s*$")
_HEADING = re.compile(r"^\s*(#{1,6})\s+(.*)$")
_ITEM = re.compile(r"^(\s*)(?:[-*\u2022]\s+(?:\[[ xX]\]\s+)?|\d{1,3}[.)]\s+|\u25b8\s+|>\s+)(.*)$")
_TABLE_SEP = re.compile(r"^\s*\|(?:\s*:?-{3,}:?\s*\|)+\s*$")
_SCHEMA_TYPES = {"title", "rich_text", "number", "select", "multi_select", "status", "date", "people", "files",
                 "checkbox", "url", "email", "phone_number", "formula", "relation", "rollup", "created_time",
                 "created_by", "last_edited_time", "last_edited_by", "unique_id", "verification", "button"}


@dataclass
class Unit:
    entity_id: str
    title: str  # the record's title
    path: tuple[str, ...]  # containers from the root down
    text: str  # the statement as written (a table cell is stated as a sentence)
    kind: str  # sentence | item | cell | property | message | changed
    section: str = ""  # nearest heading above it ("" at the top of a page)
    author: str | None = None  # who wrote it (thread messages)
    lead: str = ""  # the item or message it hangs under (a list's lead-in, the question a reply answers)
    previous: str | None = None  # for a changed sentence: the sentence it replaced
    order: int = 0  # position in its record
    fact: F.Fact | None = None  # a cell or property as (subject, key, value): asked with the fact templates

    @property
    def shape(self) -> str:
        """The text with digits masked and punctuation dropped: near-identical lines share it."""
        return re.sub(r"\d+", "0", F.normalize(self.text))


@dataclass
class Extracted:
    units: list[Unit]
    dropped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # entity -> reason -> n

    def by_entity(self) -> dict[str, list[Unit]]:
        out: dict[str, list[Unit]] = defaultdict(list)
        for u in self.units:
            out[u.entity_id].append(u)
        return out


# --- splitting text into statements -----------------------------------------------------------------


def sentences(text: str) -> list[str]:
    """Sentences of a paragraph (spaCy's parser decides the boundaries)."""
    from .nlp import parse

    text = " ".join(text.split())
    if not text:
        return []
    return [s.text.strip() for s in parse([text])[0].sents if s.text.strip()]


def _split_many(paragraphs: list[str]) -> list[list[str]]:
    from .nlp import parse

    docs = parse([" ".join(p.split()) for p in paragraphs])
    return [[s.text.strip() for s in d.sents if s.text.strip()] for d in docs]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_units(rows: list[str], base: dict[str, Any], section: str) -> list[Unit]:
    """A Markdown table as one unit per cell: "The <column> of <row key> is <value>"."""
    body = [r for r in rows if not _TABLE_SEP.match(r)]
    if len(body) < 2:
        return []
    header, data = _cells(body[0]), [_cells(r) for r in body[1:]]
    out = []
    for row in data:
        if not row or not row[0]:
            continue
        key = row[0]
        for col, value in zip(header[1:], row[1:]):
            if value and col:
                out.append(Unit(text=f"{key}: {_lower_first(col)} {value}.", kind="cell", section=section,
                                lead=f"{header[0]}: {key}" if header[0] else key,
                                fact=F.Fact(key, col, value, base["entity_id"]), **base))
    return out


def _lower_first(s: str) -> str:
    return s if s[:2].isupper() else s[:1].lower() + s[1:]


def document_units(doc: Document, text: str | None = None) -> list[Unit]:
    """Units of a page: paragraphs split into sentences, list items, table cells, ``Key: value``
    lines and properties, each under its section heading."""
    text = doc.text if text is None else text
    base = {"entity_id": doc.entity_id, "title": doc.title, "path": tuple(doc.path)}
    if doc.doc_type in ("data_source", "database") and _looks_like_schema(doc):
        return []
    pending: list[tuple[str, str, str, str]] = []  # (kind, section, lead, text) in order
    tables: list[tuple[int, list[str], str]] = []
    section, para, table = "", [], []
    parents: list[tuple[int, str]] = []  # (indent, item text) of enclosing list items

    def flush_para() -> None:
        if para:
            pending.append(("para", section, "", " ".join(para)))
            para.clear()

    def flush_table() -> None:
        if table:
            tables.append((len(pending), list(table), section))
            pending.append(("table", section, "", ""))
            table.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            flush_para()
            flush_table()
            parents.clear()
            continue
        if line.lstrip().startswith("|"):
            flush_para()
            table.append(line)
            continue
        flush_table()
        if _SKIP_LINE.match(line):
            flush_para()
            continue
        m = _HEADING.match(line)
        if m:
            flush_para()
            parents.clear()
            section = m.group(2).strip()
            continue
        m = _ITEM.match(line)
        if m:
            flush_para()
            indent, item = len(m.group(1)), m.group(2).strip()
            while parents and parents[-1][0] >= indent:
                parents.pop()
            lead = parents[-1][1] if parents else ""
            if item:
                pending.append(("item", section, lead, item))
                parents.append((indent, item))
            continue
        para.append(line.strip())
    flush_para()
    flush_table()

    paras = [p[3] for p in pending if p[0] == "para"]
    split = iter(_split_many(paras)) if paras else iter(())
    out: list[Unit] = []
    table_at = {i: (rows, sec) for i, rows, sec in tables}
    for i, (kind, sec, lead, body) in enumerate(pending):
        if kind == "para":
            out += [Unit(text=s, kind="sentence", section=sec, **base) for s in next(split)]
        elif kind == "table":
            rows, tsec = table_at[i]
            out += _table_units(rows, base, tsec)
        else:
            kv = F.facts_in_text(body, doc.title, doc.entity_id)
            if kv:  # a `Key: value` item is stated as a sentence, as before (one source among several)
                out.append(Unit(text=f"The {_lower_first(kv[0].key)} of {doc.title} is {kv[0].value}.", kind="item",
                                section=sec, lead=lead, **base))
            else:
                out.append(Unit(text=body, kind="item", section=sec, lead=lead, **base))
    for k, v in doc.properties.items():
        key = F._clean_key(k)
        if key and v and f"{k}: {v}" not in text:
            out.append(Unit(text=f"The {_lower_first(key)} of {doc.title} is {v}.", kind="property",
                            fact=F.Fact(doc.title, key, v, doc.entity_id), **base))
    for n, u in enumerate(out):
        u.order = n
    return out


def _looks_like_schema(doc: Document) -> bool:
    """A data source rendered as its columns and their types: nothing a colleague asks about."""
    values = [v.strip().lower() for v in doc.properties.values()]
    typed = sum(v in _SCHEMA_TYPES for v in values)
    lines = [ln for ln in doc.text.splitlines() if ln.strip()]
    typed_lines = sum(ln.rsplit(":", 1)[-1].strip().lower() in _SCHEMA_TYPES for ln in lines if ":" in ln)
    return (values and typed >= len(values) / 2) or (lines and typed_lines >= len(lines) / 2)


def thread_units(thread: Thread) -> list[Unit]:
    """Sentences of every message, each reply under the message it answers."""
    base = {"entity_id": thread.entity_id, "title": thread.title, "path": tuple(thread.path)}
    flat = [(m, parent.text if parent else "") for m, parent in thread.walk()]
    texts = [m.text for m, _ in flat if m.text.strip()]
    split = iter(_split_many(texts)) if texts else iter(())
    out = []
    for m, lead in flat:
        if not m.text.strip():
            continue
        who = (m.author.name or m.author.id) if m.author else None
        out += [Unit(text=s, kind="message", author=who, lead=" ".join(lead.split())[:300], **base)
                for s in next(split)]
    for n, u in enumerate(out):
        u.order = n
    return out


def changed_sentences(before: str, after: str) -> list[tuple[str | None, str]]:
    """The sentences a text edit changed: (old sentence or None when added, new sentence)."""
    old, new = _split_many([before, after]) if before.strip() else ([], sentences(after))
    out: list[tuple[str | None, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace":
            olds, news = old[i1:i2], new[j1:j2]
            for k, s in enumerate(news):
                out.append((olds[k] if k < len(olds) else None, s))
        elif op == "insert":
            out += [(None, s) for s in new[j1:j2]]
    return out


def edit_units(edit: Edit, title: str, path: tuple[str, ...]) -> list[Unit]:
    """A text edit as the sentences it changed, each knowing the sentence it replaced."""
    if edit.field != "text" or not edit.before_known or edit.before is None:
        return []
    base = {"entity_id": edit.entity_id, "title": title or edit.title, "path": path}
    who = (edit.author.name or edit.author.id) if edit.author else None
    return [Unit(text=new, kind="changed", previous=old, author=who, **base)
            for old, new in changed_sentences(_plain(edit.before), _plain(edit.after))]


def _plain(text: str) -> str:
    """Markdown page text as prose lines, so a sentence diff sees sentences, not list markers."""
    lines = []
    for line in text.splitlines():
        m = _ITEM.match(line) or _HEADING.match(line)
        lines.append((m.group(2) if m else line).strip())
    return "\n".join(lines)


# --- junk resistance -------------------------------------------------------------------------------


def _informative(u: Unit) -> int:
    """How much a unit says: capitalised words, numbers, length (for the per-record budget)."""
    words = u.text.split()
    caps = sum(1 for w in words[1:] if w[:1].isupper())
    nums = len(re.findall(r"\d", u.text))
    return 3 * caps + min(nums, 6) + min(len(words), 25) // 5


def select(units: list[Unit], *, max_units_per_record: int, repeat_limit: int = 3) -> Extracted:
    """Drop boilerplate and apply the per-record budget (see the module docstring)."""
    ex = Extracted(units=[])
    per_record_shapes: dict[str, Counter] = defaultdict(Counter)
    records_with_text: dict[str, set[str]] = defaultdict(set)
    for u in units:
        per_record_shapes[u.entity_id][u.shape] += 1
        records_with_text[F.normalize(u.text)].add(u.entity_id)
    seen: set[str] = set()
    kept: dict[str, list[Unit]] = defaultdict(list)
    for u in units:
        if len(u.text.split()) < 3 and u.kind not in ("cell", "property", "changed"):
            ex.dropped[u.entity_id]["too_short"] += 1
            continue
        # Only prose can be boilerplate: table cells that differ by a number are different facts. A
        # line repeated with other numbers inside one record is a log; across records only the
        # same words (a footer) are, since one-fact records written from a template differ.
        if u.kind in ("sentence", "item", "message") and (
                per_record_shapes[u.entity_id][u.shape] >= repeat_limit
                or len(records_with_text[F.normalize(u.text)]) >= repeat_limit):
            ex.dropped[u.entity_id]["repeated"] += 1
            continue
        exact = F.normalize(u.text)
        if exact in seen and u.kind != "changed":
            ex.dropped[u.entity_id]["duplicate"] += 1
            continue
        seen.add(exact)
        kept[u.entity_id].append(u)
    for entity, us in kept.items():
        if len(us) > max_units_per_record:
            ranked = sorted(us, key=lambda u: (-(u.kind == "changed"), -_informative(u), u.order))
            keep = {id(u) for u in ranked[:max_units_per_record]}
            ex.dropped[entity]["over_budget"] += len(us) - max_units_per_record
            us = [u for u in us if id(u) in keep]
        ex.units += us
    return ex
