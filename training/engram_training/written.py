"""Hand-written evaluation: a shipped workspace's questions, asked the way colleagues ask them.

The questions (``<workspace>/questions.jsonl``) are read only here, by the benchmark, never by
anything that builds training data. Scoring is ``facts.is_correct`` (normalised containment of
an accepted answer) with two stricter rules: an answer that also names a value listed as
``wrong`` (the old value of an edited fact, a confusable candidate) is wrong, and an
unanswerable question is answered right only by saying so ("I don't know", "the notes don't
say", ...).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from engram_sdk import Document, parse_record

from . import facts as F

_ABSTAIN = re.compile(r"\b(?:don'?t|do not|doesn'?t|does not|cannot|can'?t|couldn'?t) (?:know|say|tell|find)\b|"
                      r"\bnot sure\b|\bno (?:information|record|mention)\b|\bnot (?:mentioned|recorded|stated)\b|"
                      r"\bunknown\b|\bno idea\b", re.I)


@dataclass
class Question:
    id: str
    kind: str  # single | two_page | edit | unanswerable
    question: str
    answers: list[str]
    wrong: list[str]
    entities: list[str]
    evidence: str


def questions(workspace: str) -> list[Question]:
    text = resources.files("engram_sdk.samples").joinpath(workspace, "questions.jsonl").read_text()
    out = []
    for line in text.splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(Question(d["id"], d["kind"], d["question"], list(d.get("answers") or []),
                                list(d.get("wrong") or []), list(d.get("entities") or []), d.get("evidence", "")))
    return out


def edits(workspace: str) -> list[dict[str, Any]]:
    folder = resources.files("engram_sdk.samples").joinpath(workspace)
    if not folder.joinpath("edits.jsonl").is_file():
        return []
    return [json.loads(line) for line in folder.joinpath("edits.jsonl").read_text().splitlines() if line.strip()]


def edit_records(records: list[Any], changes: list[dict[str, Any]]) -> list[Any]:
    """The records a connector would deliver after ``changes``: per edited page, the text Edit
    (whole text before -> after, as the Notion connector emits it) and the page's new version."""
    docs = {r.entity_id: r for r in records if isinstance(r, Document)}
    out = []
    for change in changes:
        doc = docs[change["entity_id"]]
        when = datetime.fromisoformat(change["updated_at"].replace("Z", "+00:00")).astimezone(timezone.utc)
        new_text = doc.text.replace(change["before"], change["after"], 1)
        new = doc.model_copy(update={"text": new_text, "updated_at": when})
        author = change.get("author") or {}
        common = {k: v for k, v in json.loads(doc.model_dump_json()).items()
                  if k not in ("kind", "doc_type", "text", "mime_type", "properties", "title")}
        edit = parse_record({**common, "kind": "edit", "field": "text", "before": doc.text, "after": new_text,
                             "updated_at": when.isoformat(), "title": doc.title,
                             "author": {"id": author.get("id", "someone"), "name": author.get("name")}})
        out += [edit, new]
        docs[doc.entity_id] = new
    return out


def abstains(answer: str) -> bool:
    return bool(_ABSTAIN.search(answer))


def correct(q: Question, answer: str) -> bool:
    if q.kind == "unanswerable":
        return abstains(answer)
    if abstains(answer) and not F.is_correct(answer, q.answers):
        return False
    return F.is_correct(answer, q.answers) and not any(F.is_correct(answer, [w]) for w in q.wrong)


def score(qs: list[Question], answers: list[str]) -> dict[str, Any]:
    ok = [correct(q, a) for q, a in zip(qs, answers)]
    return {"correct": sum(ok), "total": len(ok), "rate": round(sum(ok) / len(ok), 3) if ok else None, "ok": ok}


def paired_difference(a: list[bool], b: list[bool]) -> dict[str, float]:
    """Mean of a - b per question with a 95% normal interval (paired: the same questions)."""
    d = [int(x) - int(y) for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    half = 1.96 * math.sqrt(var / n)
    return {"difference": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4), "n": n}
