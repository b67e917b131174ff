"""Hand-written evaluation: a shipped workspace's questions, asked the way colleagues ask them.

The questions (``<workspace>/questions.jsonl``, and a month's ``<workspace>/days.jsonl``) are read
only here, by the benchmarks, never by anything that builds training data. Scoring is ``facts.is_correct`` (normalised containment of
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

from engram_sdk import Document, RecordError, Thread, parse_record, samples

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
    day: int | None = None  # days.jsonl: the day the question is first asked
    until: int | None = None  # days.jsonl: the day an edit or deletion makes it untrue (None: never)

    def live_on(self, day: int) -> bool:
        """Still true on ``day``: asked since, and not yet retired by an edit or a deletion."""
        return (self.day or 0) <= day and (self.until is None or day < self.until)


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


def split_by_edits(qs: list[Question], changes: list[dict[str, Any]]) -> tuple[list[Question], list[Question]]:
    """The questions a first version is asked (none whose evidence is an edit's new text), and the
    edit questions asked after the edits' update."""
    after = [F.normalize(c["after"])[:48] for c in changes]
    needs_edit = [q.kind == "edit" or any(a and a in F.normalize(q.evidence) for a in after) for q in qs]
    return ([q for q, e in zip(qs, needs_edit) if not e],
            [q for q, e in zip(qs, needs_edit) if e and q.kind == "edit"])


def edit_records(records: list[Any], changes: list[dict[str, Any]]) -> list[Any]:
    """The records a connector would deliver after ``changes``: per edited page, the text Edit
    (whole text before -> after, as the Notion connector emits it) and the page's new version.
    A change gives ``before`` and ``after`` (the first occurrence is replaced) or the whole new
    ``text``."""
    docs = {r.entity_id: r for r in records if isinstance(r, Document)}
    out = []
    for change in changes:
        doc = docs[change["entity_id"]]
        when = datetime.fromisoformat(change["updated_at"].replace("Z", "+00:00")).astimezone(timezone.utc)
        new_text = change["text"] if "text" in change else doc.text.replace(change["before"], change["after"], 1)
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


# --- a month of a team: days.jsonl (``engram bench continual``) ----------------------------------------

CHANGES = ("new", "edit", "reply", "delete")
DAY_KINDS = ("single", "edit", "deleted")


class DaysFileError(ValueError):
    """A malformed days file; the message names the line or day and what is wrong with it."""


@dataclass
class Day:
    day: int
    date: str
    changes: list[dict[str, Any]]
    questions: list[Question]


def days(workspace: str) -> list[Day]:
    """The month of ``workspace`` (day 0: questions on its starting records; days 1..N: changes and
    questions), checked against the records (see ``parse_days``)."""
    folder = resources.files("engram_sdk.samples").joinpath(workspace)
    if not folder.joinpath("days.jsonl").is_file():
        raise FileNotFoundError(f"the shipped workspace {workspace!r} has no days.jsonl")
    return parse_days(folder.joinpath("days.jsonl").read_text(), samples.load_records(workspace))


def parse_days(text: str, records: list[Any]) -> list[Day]:
    """Parse a days file and replay its changes on ``records``: every edit's ``before`` occurs once
    in the page as it stands that day, every reply and deletion names something that exists, and
    every question that stops being true (``until``) names an entity changed or deleted that day.
    A mistake raises ``DaysFileError`` naming the line or day, so a hand-written file is fixed
    where it is wrong rather than scored wrong."""
    out: list[Day] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(_parse_day(line, n, expected=len(out)))
    if not out:
        raise DaysFileError("the days file holds no day")
    ids = [q.id for d in out for q in d.questions]
    if len(set(ids)) != len(ids):
        raise DaysFileError(f"question ids repeat: {sorted({i for i in ids if ids.count(i) > 1})}")
    current = {r.entity_id: r for r in records}
    touched: dict[int, set[str]] = {}
    deleted: dict[int, set[str]] = {}
    for d in out:
        try:
            day_records(current, d.changes)
        except (DaysFileError, RecordError) as exc:  # RecordError: a record the connector could not deliver
            raise DaysFileError(f"day {d.day}: {exc}") from None
        touched[d.day] = {c.get("entity_id") or c["record"]["entity_id"] for c in d.changes}
        deleted[d.day] = {c["entity_id"] for c in d.changes if c["change"] == "delete"}
    last = out[-1].day
    for d in out:
        for q in d.questions:
            if q.kind == "deleted" and not set(q.entities) <= deleted[d.day]:
                raise DaysFileError(f"day {d.day}: question {q.id} is about a deleted page, but "
                                    f"{', '.join(q.entities)} is not deleted that day")
            if q.until is not None and (q.until > last or not set(q.entities) & touched[q.until]):
                raise DaysFileError(f"day {d.day}: question {q.id} stops being true on day {q.until}, but nothing "
                                    f"it names ({', '.join(q.entities)}) changes that day")
    return out


def _parse_day(line: str, n: int, *, expected: int) -> Day:
    try:
        raw = json.loads(line)
    except ValueError as exc:
        raise DaysFileError(f"line {n}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or type(raw.get("day")) is not int:
        raise DaysFileError(f'line {n}: each line is one day, an object with an integer "day"')
    where = f"line {n} (day {raw['day']})"
    if raw["day"] != expected:
        raise DaysFileError(f"{where}: days are numbered 0, 1, 2, ... in file order; expected day {expected}")
    try:
        datetime.strptime(str(raw.get("date")), "%Y-%m-%d")
    except ValueError:
        raise DaysFileError(f'{where}: "date" must be YYYY-MM-DD, not {raw.get("date")!r}') from None
    changes, questions = raw.get("changes", []), raw.get("questions", [])
    if not isinstance(changes, list) or not isinstance(questions, list):
        raise DaysFileError(f'{where}: "changes" and "questions" must be lists')
    for i, c in enumerate(changes, 1):
        if not isinstance(c, dict) or c.get("change") not in CHANGES:
            raise DaysFileError(f'{where}: change {i} must be an object whose "change" is one of {", ".join(CHANGES)}')
        if c["change"] != "new" and not isinstance(c.get("entity_id"), str):
            raise DaysFileError(f'{where}: change {i} ({c["change"]}) names no "entity_id"')
        if c["change"] == "new" and not isinstance(c.get("record"), dict):
            raise DaysFileError(f'{where}: change {i} (new) has no "record"')
    if raw["day"] == 0 and changes:
        raise DaysFileError(f"{where}: day 0 is the starting workspace (records.jsonl); it has questions only")
    return Day(raw["day"], raw["date"], changes, [_day_question(q, raw["day"], where) for q in questions])


def _day_question(raw: Any, day: int, where: str) -> Question:
    if not isinstance(raw, dict):
        raise DaysFileError(f"{where}: each question is an object")
    qid = raw.get("id")
    what = f"{where}: question {qid!r}"
    if not isinstance(qid, str) or not qid:
        raise DaysFileError(f'{where}: a question has no "id"')
    if raw.get("kind") not in DAY_KINDS:
        raise DaysFileError(f'{what}: "kind" must be one of {", ".join(DAY_KINDS)}, not {raw.get("kind")!r}')
    if not isinstance(raw.get("question"), str) or not raw["question"].strip():
        raise DaysFileError(f'{what}: "question" must be a non-empty string')
    for key in ("answers", "entities"):
        if not raw.get(key) or not all(isinstance(x, str) and x.strip() for x in raw[key]):
            raise DaysFileError(f'{what}: "{key}" must be a non-empty list of strings')
    wrong = raw.get("wrong") or []
    if not all(isinstance(x, str) and x.strip() for x in wrong):
        raise DaysFileError(f'{what}: "wrong" must be a list of strings')
    if raw["kind"] == "edit" and not wrong:
        raise DaysFileError(f'{what}: an edit question lists the old value under "wrong"')
    until = raw.get("until")
    if until is not None and (type(until) is not int or until <= day):
        raise DaysFileError(f'{what}: "until" is the later day it stops being true (an integer above {day}) or null')
    if raw["kind"] == "deleted" and until is not None:
        raise DaysFileError(f'{what}: a deleted page stays deleted, so its question has no "until"')
    return Question(qid, raw["kind"], raw["question"], list(raw["answers"]), list(wrong), list(raw["entities"]),
                    raw.get("evidence", ""), day=day, until=until)


def day_records(current: dict[str, Any], changes: list[dict[str, Any]]) -> list[Any]:
    """The records connectors would deliver for one day's ``changes``, which are applied to
    ``current`` (entity id -> its latest record, updated in place): a new page or thread as itself,
    a text edit as ``edit_records`` gives it, a reply as the thread's new version, a deletion as a
    Tombstone."""
    out: list[Any] = []
    for i, change in enumerate(changes, 1):
        kind = change["change"]
        if kind == "new":
            record = parse_record(change["record"])
            if record.entity_id in current:
                raise DaysFileError(f"change {i}: {record.entity_id} exists already; change it with an edit or reply")
            current[record.entity_id] = record
            out.append(record)
            continue
        old = current.get(change["entity_id"])
        if old is None:
            raise DaysFileError(f"change {i} ({kind}): {change['entity_id']} does not exist (never created, or deleted)")
        if kind == "edit":
            if not isinstance(old, Document):
                raise DaysFileError(f"change {i}: only a page's text is edited; {old.entity_id} is a {old.kind}")
            if "text" not in change and old.text.count(str(change.get("before"))) != 1:
                raise DaysFileError(f"change {i}: the edit's \"before\" must occur exactly once in {old.entity_id}, "
                                    f"not {old.text.count(str(change.get('before')))} times")
            records = edit_records([old], [change])
            current[old.entity_id] = records[-1]
            out += records
        elif kind == "reply":
            if not isinstance(old, Thread):
                raise DaysFileError(f"change {i}: a reply goes to a thread; {old.entity_id} is a {old.kind}")
            data = json.loads(old.model_dump_json())
            roots = [m for m in data["messages"] if m["id"] == change.get("to", m["id"])]
            if not roots or not isinstance(change.get("message"), dict):
                raise DaysFileError(f"change {i}: a reply needs a \"message\" and, if given, a root message id \"to\"")
            roots[0]["replies"].append(change["message"])
            data["updated_at"] = change["message"].get("created_at")
            current[old.entity_id] = parse_record(data)
            out.append(current[old.entity_id])
        else:
            common = {k: v for k, v in json.loads(old.model_dump_json()).items()
                      if k in ("platform", "workspace_id", "entity_id", "parent_id", "url", "path", "authors",
                               "created_at", "visible_to", "restricted")}
            out.append(parse_record({**common, "kind": "tombstone", "updated_at": change.get("updated_at"),
                                     "reason": change.get("reason", "deleted")}))
            del current[old.entity_id]
    return out


def still_answers(q: Question, answer: str) -> bool:
    """A deleted page's question: the answer still gives what only the deleted page said."""
    return F.is_correct(answer, q.answers)
