"""The hand-written evaluation workspaces: pinned, well-formed, and kept out of the trainer.

``tidewater`` is the development set of the prose-learning work (docs/training.md): a workspace
written as prose by someone outside the trainer's code, with questions written by hand. Its
files are pinned by hash so a change to them is a deliberate, reviewed change; and the trainer's
source and data may contain none of its names (the figure that counts is measured on workspaces
nobody on the team has seen, so nothing may be tuned to this one). ``brightmash`` (50 records)
is held out: written the same way by another outsider, its questions are not read while the
recipe is developed; it times a 50-page first version and reports recall on unseen questions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from engram_sdk._records import parse_record

PINNED = {
    "brightmash": {
        "records.jsonl": "39b790ba8089a6cabfadfbc879e7193e636d4427bcfa90ec25907ef13d7901a1",
        "edits.jsonl": "22fafe3e8e37f070742b52d04cee7830bc0bd9d30323ec5a32af1bf5a696b13b",
        "questions.jsonl": "37b04f233ad1c7891f159fa91badb8163317b99346c701c18c57500e4e1d375a",
    },
    "tidewater": {
        "records.jsonl": "08cf876b57f3b14dd7dfc625b8257536305b4508b38123683b9289d40235a67b",
        "edits.jsonl": "f771f61fd14cc2751d6bb841fbf69456c860d26d9cb1fb568b328fb3603d86e3",
        "questions.jsonl": "746600164412d58a61cf1cf38bf6c358ce56a47288da1397d05cc9879cfd2a2a",
    },
}
TRAINING = Path(__file__).resolve().parents[2] / "training" / "engram_training"
_COMMON = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def _folder(name: str):
    return resources.files("engram_sdk.samples").joinpath(name)


def _lines(name: str, file: str) -> list[dict]:
    return [json.loads(line) for line in _folder(name).joinpath(file).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_files_are_pinned(name):
    for file, digest in PINNED[name].items():
        assert hashlib.sha256(_folder(name).joinpath(file).read_bytes()).hexdigest() == digest, file


@pytest.mark.parametrize("name", sorted(PINNED))
def test_workspace_and_questions_are_well_formed(name):
    records = [parse_record(r) for r in _lines(name, "records.jsonl")]
    texts = {r.entity_id: getattr(r, "text", "") for r in records}
    for e in _lines(name, "edits.jsonl"):
        assert texts[e["entity_id"]].count(e["before"]) == 1, e["id"]
    kinds = Counter(q["kind"] for q in _lines(name, "questions.jsonl"))
    assert kinds["single"] >= 20 and kinds["two_page"] >= 10 and kinds["unanswerable"] >= 10
    assert kinds["edit"] >= 5 and kinds["edit"] == len(_lines(name, "edits.jsonl"))
    assert sum(kinds.values()) >= 40


@pytest.fixture(scope="module")
def vocabulary() -> set[str]:
    """Words the base model's tokenizer holds whole: ordinary English. A made-up name (a person,
    a system, a vendor) is split into pieces."""
    from transformers import AutoTokenizer

    from engram_training.base import resolve

    path = resolve(None)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return {w[1:].lower() for w in tok.get_vocab() if w.startswith("\u0120") and w[1:].isalpha()}


def _names(name: str, vocabulary: set[str]) -> set[str]:
    """Words the workspace uses only capitalised that the tokenizer does not hold whole."""
    text = " ".join(json.dumps(r) for r in _lines(name, "records.jsonl"))
    words = re.findall(r"[A-Za-z][a-z]{3,}", text)
    lower = {w for w in words if w[0].islower()} | vocabulary | _COMMON
    return {w.lower() for w in words if w[0].isupper() and w.lower() not in lower}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_trainer_contains_no_name_from_the_evaluation_workspace(name, vocabulary):
    names = _names(name, vocabulary)
    assert len(names) >= 20
    for path in TRAINING.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".txt", ".jsonl", ".json"):
            words = set(re.findall(r"[a-z]{4,}", path.read_text(errors="ignore").lower()))
            assert not names & words, f"{path.name} uses {sorted(names & words)[:5]} from the {name} workspace"
