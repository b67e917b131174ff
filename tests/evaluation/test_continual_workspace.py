"""The month of ``engram bench continual``: ``marrowby``'s starting records and thirty hand-written
days, pinned by hash (a change to them is a deliberate, reviewed change), consistent with
themselves (every answer is in the text the day it is asked, every retired question is retired
by a real change) and kept out of the trainer's source."""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

import pytest

from engram_sdk import Thread, samples
from engram_training import facts as F
from engram_training import written as W

WORKSPACE = "marrowby"
PINNED = {
    "records.jsonl": "b6f3990b019921a9e34cdcee7b3a43214512ccdfd82cba50a45df7a260904798",
    "days.jsonl": "540b1a5198c9dbb2820de1abbb0df1b9d33896daf13e4d8190fcc018ee048070",
}
TRAINING = Path(__file__).resolve().parents[2] / "training" / "engram_training"
_COMMON = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def _folder():
    return resources.files("engram_sdk.samples").joinpath(WORKSPACE)


def _text(record) -> str:
    if isinstance(record, Thread):
        return " ".join(f"{m.author.name if m.author else ''}: {m.text}" for m, _ in record.walk())
    return record.text


def _count(records: dict, entities: list[str], values: list[str]) -> int:
    """How often the entities' text states any of the values (the scoring rule's containment)."""
    text = " " + F.normalize(" ".join(_text(records[e]) for e in entities if e in records)) + " "
    return sum(text.count(f" {F.normalize(v)} ") for v in values)


def _says(records: dict, entities: list[str], values: list[str]) -> bool:
    return _count(records, entities, values) > 0


def test_files_are_pinned():
    for file, digest in PINNED.items():
        assert hashlib.sha256(_folder().joinpath(file).read_bytes()).hexdigest() == digest, file


@pytest.fixture(scope="module")
def month() -> list[W.Day]:
    return W.days(WORKSPACE)


def test_thirty_days_each_with_changes_and_questions(month):
    assert [d.day for d in month] == list(range(31))
    assert all(d.changes and d.questions for d in month[1:])
    kinds = [c["change"] for d in month for c in d.changes]
    assert kinds.count("delete") >= 4 and kinds.count("reply") >= 5 and kinds.count("new") >= 10
    asked = [q for d in month for q in d.questions]
    assert len(month[0].questions) >= 20 and len(asked) >= 100
    assert sum(q.kind == "edit" for q in asked) >= 12
    assert {d.day for d in month for q in d.questions if q.kind == "deleted"} == \
        {d.day for d in month for c in d.changes if c["change"] == "delete"}


def test_every_answer_is_in_the_text_the_day_it_is_asked(month):
    current = {r.entity_id: r for r in samples.load_records(WORKSPACE)}
    for d in month:
        before = dict(current)
        W.day_records(current, d.changes)
        for q in d.questions:
            if q.kind == "deleted":
                assert _says(before, q.entities, q.answers), q.id
                assert not _says(current, list(current), q.answers), q.id  # nowhere else either
                continue
            assert _says(current, q.entities, q.answers), q.id
            if q.kind == "edit":  # the old value was there and the edit took it out
                assert _count(current, q.entities, q.wrong) < _count(before, q.entities, q.wrong), q.id
    for q in (q for d in month for q in d.questions if q.kind != "deleted" and q.until is None):
        assert _says(current, q.entities, q.answers), f"{q.id} is not true at the end of the month"


def test_a_retired_question_is_retired_by_a_change_that_takes_its_answer_out(month):
    current = {r.entity_id: r for r in samples.load_records(WORKSPACE)}
    retiring: dict[int, list[W.Question]] = {}
    for q in (q for d in month for q in d.questions if q.until is not None):
        retiring.setdefault(q.until, []).append(q)
    assert len(retiring) >= 10
    for d in month:
        before = dict(current)
        W.day_records(current, d.changes)
        for q in retiring.get(d.day, []):
            assert _count(current, q.entities, q.answers) < _count(before, q.entities, q.answers), q.id


@pytest.fixture(scope="module")
def vocabulary() -> set[str]:
    """Words the base model's tokenizer holds whole: ordinary English. A made-up name is split."""
    from transformers import AutoTokenizer

    from engram_training.base import resolve

    path = resolve(None)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return {w[1:].lower() for w in tok.get_vocab() if w.startswith("\u0120") and w[1:].isalpha()}


def test_trainer_contains_no_name_from_the_month(vocabulary):
    text = _folder().joinpath("records.jsonl").read_text() + _folder().joinpath("days.jsonl").read_text()
    words = re.findall(r"[A-Za-z][a-z]{3,}", json.dumps(text))
    lower = {w for w in words if w[0].islower()} | vocabulary | _COMMON
    names = {w.lower() for w in words if w[0].isupper() and w.lower() not in lower}
    assert len(names) >= 20
    for path in TRAINING.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".txt", ".jsonl", ".json"):
            found = names & set(re.findall(r"[a-z]{4,}", path.read_text(errors="ignore").lower()))
            assert not found, f"{path.name} uses {sorted(found)[:5]} from the {WORKSPACE} workspace"
