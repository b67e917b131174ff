#!/usr/bin/env python3
"""Check a hand-written evaluation workspace (records, edits, questions) for internal consistency.

Usage:  python scripts/check_eval_workspace.py engram_sdk/samples/tidewater [--quiet]

The folder holds:

- ``records.jsonl``    one ``Record.model_dump_json()`` per line (``engram_sdk._records``)
- ``edits.jsonl``      {"id", "entity_id", "before", "after", "updated_at", "author": {"id", "name"}}
- ``questions.jsonl``  {"id", "kind", "question", "answers", "wrong", "entities", "evidence"}
                       plus, for unanswerable questions, an optional ``absent``: regular expressions
                       that would match a sentence answering the question and must match nothing

What is checked:

- every record line parses with ``parse_record`` and round-trips to the same JSON; entity ids are unique;
  timestamps are ISO with ``Z``
- every edit targets a Notion page, and its ``before`` occurs exactly once in that page's text (both in
  the original text and after the earlier edits have been applied, in file order)
- questions: ids unique, kinds known, minimum counts per kind, no ``wrong`` string inside an accepted answer
- single / two_page: the named entities exist; at least one accepted answer occurs (normalised, as whole
  words) in their text, properties or messages after all edits; every evidence sentence (pieces separated
  by `` … ``) occurs in one of them; two_page questions name two or more entities and their evidence
  spans at least two of them
- edit: one question per edit; an accepted answer occurs in the edit's ``after`` and not in its
  ``before``; some ``wrong`` value (the old value) occurs in ``before`` and none in ``after``
- unanswerable: no answers, no wrong values, no entities; none of the ``absent`` patterns matches any
  record (before or after the edits)

Normalisation (as the scorer's): lowercase, fold accents, drop punctuation, collapse whitespace. Both
readings of "drop punctuation" are checked: punctuation replaced by a space, and punctuation deleted.
Exit status 0 when everything passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engram_sdk._records import Document, Thread, parse_record  # noqa: E402

KINDS = ("single", "two_page", "edit", "unanswerable")
EVIDENCE_SEP = re.compile(r" … | / ")  # pieces from different places
KV_LINE = re.compile(r"^[A-Z][A-Za-z /&()'-]{0,40}: \S")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def norm(text: str, mode: str) -> str:
    """mode 'space': punctuation -> space; mode 'delete': punctuation removed."""
    out = []
    for c in _fold(text):
        if c.isalnum() or c.isspace():
            out.append(c)
        elif mode == "space":
            out.append(" ")
    return " ".join("".join(out).split())


MODES = ("space", "delete")


def contains(hay: str, needle: str, mode: str) -> bool:
    n = norm(needle, mode)
    return bool(n) and f" {n} " in f" {norm(hay, mode)} "


def contains_all_modes(hay: str, needle: str) -> bool:
    return all(contains(hay, needle, m) for m in MODES)


def any_answer_in(hay: str, answers: list[str]) -> bool:
    """At least one accepted answer in each normalisation mode."""
    return all(any(contains(hay, a, m) for a in answers) for m in MODES)


def _messages_text(messages) -> list[str]:
    out = []
    for m in messages:
        out.append(m.text)
        out.extend(_messages_text(m.replies))
    return out


def haystack(rec, text: str | None = None) -> str:
    if isinstance(rec, Document):
        props = [f"{k}: {v}" for k, v in rec.properties.items()]
        return "\n".join([rec.title, rec.text if text is None else text, *props])
    if isinstance(rec, Thread):
        return "\n".join([rec.title, *_messages_text(rec.messages)])
    return ""


class Report:
    def __init__(self, quiet: bool) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.quiet = quiet

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def info(self, msg: str) -> None:
        if not self.quiet:
            print(msg)


def _jsonl(path: Path, rep: Report) -> list[tuple[int, str]]:
    if not path.exists():
        rep.error(f"{path.name}: missing")
        return []
    lines = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            lines.append((n, line))
    return lines


def _ts_ok(value) -> bool:
    return isinstance(value, str) and value.endswith("Z") and bool(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?", value))


def check_records(folder: Path, rep: Report):
    records = {}
    for n, line in _jsonl(folder / "records.jsonl", rep):
        try:
            rec = parse_record(line)
        except Exception as exc:  # noqa: BLE001 - report every bad line
            rep.error(f"records.jsonl:{n}: {exc}")
            continue
        raw = json.loads(line)
        if json.loads(rec.model_dump_json()) != raw:
            rep.error(f"records.jsonl:{n}: does not round-trip through model_dump_json (missing or extra fields)")
        for key in ("created_at", "updated_at"):
            if raw.get(key) is not None and not _ts_ok(raw[key]):
                rep.error(f"records.jsonl:{n}: {key} {raw[key]!r} is not ISO with Z")
        if rec.entity_id in records:
            rep.error(f"records.jsonl:{n}: duplicate entity_id {rec.entity_id}")
        records[rec.entity_id] = rec
    kinds = Counter(f"{r.platform}/{getattr(r, 'doc_type', None) or getattr(r, 'thread_type', None)}" for r in records.values())
    rep.info(f"records: {len(records)}  " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    kv = sum(
        1 for r in records.values() if isinstance(r, Document) and r.platform == "notion"
        for line in r.text.splitlines() if KV_LINE.match(line.lstrip("- "))
    )
    rep.info(f"`Key: value`-shaped lines on pages: {kv}")
    return records


def check_edits(folder: Path, records: dict, rep: Report):
    texts = {eid: r.text for eid, r in records.items() if isinstance(r, Document)}
    original = dict(texts)
    edits = []
    for n, line in _jsonl(folder / "edits.jsonl", rep):
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            rep.error(f"edits.jsonl:{n}: not JSON ({exc})")
            continue
        missing = {"id", "entity_id", "before", "after", "updated_at", "author"} - set(e)
        if missing:
            rep.error(f"edits.jsonl:{n}: missing keys {sorted(missing)}")
            continue
        eid = e["entity_id"]
        rec = records.get(eid)
        if rec is None:
            rep.error(f"edit {e['id']}: unknown entity {eid}")
            continue
        if not (isinstance(rec, Document) and rec.platform == "notion"):
            rep.error(f"edit {e['id']}: {eid} is not a Notion page")
        if not _ts_ok(e["updated_at"]):
            rep.error(f"edit {e['id']}: updated_at {e['updated_at']!r} is not ISO with Z")
        if not isinstance(e["author"], dict) or not e["author"].get("id"):
            rep.error(f"edit {e['id']}: author needs an id")
        if e["before"] == e["after"]:
            rep.error(f"edit {e['id']}: before == after")
        n_orig = original.get(eid, "").count(e["before"])
        n_now = texts.get(eid, "").count(e["before"])
        if n_orig != 1:
            rep.error(f"edit {e['id']}: before occurs {n_orig} times in the original text of {eid} (must be 1)")
        if n_now != 1:
            rep.error(f"edit {e['id']}: before occurs {n_now} times in {eid} after earlier edits (must be 1)")
        if n_now == 1:
            texts[eid] = texts[eid].replace(e["before"], e["after"])
        edits.append(e)
    if len({e["id"] for e in edits}) != len(edits):
        rep.error("edits.jsonl: duplicate edit ids")
    rep.info(f"edits: {len(edits)}")
    return edits, texts


def check_questions(folder: Path, records: dict, edits: list, edited: dict, rep: Report, minimums: dict) -> None:
    pre = {eid: haystack(r) for eid, r in records.items()}
    post = {eid: haystack(r, edited.get(eid)) for eid, r in records.items()}
    questions = []
    for n, line in _jsonl(folder / "questions.jsonl", rep):
        try:
            questions.append(json.loads(line))
        except json.JSONDecodeError as exc:
            rep.error(f"questions.jsonl:{n}: not JSON ({exc})")
    ids = Counter(q.get("id") for q in questions)
    for qid, c in ids.items():
        if c > 1:
            rep.error(f"question id {qid} used {c} times")
    counts = Counter(q.get("kind") for q in questions)
    rep.info("questions: " + ", ".join(f"{k}={counts.get(k, 0)}" for k in KINDS) + f"  (total {len(questions)})")
    for kind, low in minimums.items():
        if counts.get(kind, 0) < low:
            rep.error(f"only {counts.get(kind, 0)} {kind} questions (need {low})")
    texts_seen = Counter(norm(q.get("question", ""), "space") for q in questions)
    for t, c in texts_seen.items():
        if c > 1:
            rep.error(f"question asked {c} times: {t!r}")

    edit_hits = Counter()
    for q in questions:
        qid = q.get("id", "?")
        missing = {"id", "kind", "question", "answers", "wrong", "entities", "evidence"} - set(q)
        if missing:
            rep.error(f"{qid}: missing keys {sorted(missing)}")
            continue
        kind, answers, wrong, ents = q["kind"], q["answers"], q["wrong"], q["entities"]
        if kind not in KINDS:
            rep.error(f"{qid}: unknown kind {kind!r}")
            continue
        if not all(isinstance(x, str) and x.strip() for x in answers + wrong + ents):
            rep.error(f"{qid}: answers, wrong and entities must be non-empty strings")
            continue
        for w in wrong:
            for a in answers:
                if any(norm(w, m) and norm(w, m) in norm(a, m) for m in MODES):
                    rep.error(f"{qid}: wrong value {w!r} is part of accepted answer {a!r}")
        unknown = [e for e in ents if e not in records]
        if unknown:
            rep.error(f"{qid}: unknown entities {unknown}")
            continue

        if kind == "unanswerable":
            if answers or wrong:  # entities may name the records it is *about*
                rep.error(f"{qid}: unanswerable questions take answers [] and wrong []")
            absent = q.get("absent") or []
            if not absent:
                rep.warn(f"{qid}: unanswerable without `absent` patterns; absence checked by hand only")
            for pat in absent:
                for eid, hay in list(pre.items()) + list(post.items()):
                    m = re.search(pat, hay)
                    if m:
                        rep.error(f"{qid}: absent pattern {pat!r} matches in {eid}: {m.group(0)!r}")
                        break
            continue

        if not answers:
            rep.error(f"{qid}: no accepted answers")
            continue
        # A quote shortened with "..." is pieces of one sentence: each must still be found.
        pieces = [p.strip() for p in re.split(r"\s*\.\.\.\s*", q["evidence"]) for p in EVIDENCE_SEP.split(p)
                  if p.strip()]

        if kind == "edit":
            mine = [e for e in edits if e["entity_id"] in ents and any(contains(e["after"], a, m) for a in answers for m in MODES)]
            if len(mine) != 1:
                rep.error(f"{qid}: matches {len(mine)} edits (need exactly one whose after holds an answer)")
                continue
            e = mine[0]
            edit_hits[e["id"]] += 1
            if not any_answer_in(e["after"], answers):
                rep.error(f"{qid}: no accepted answer in edit {e['id']}'s after text (both normalisations)")
            if any(contains(e["before"], a, m) for a in answers for m in MODES):
                rep.error(f"{qid}: an accepted answer already occurs in edit {e['id']}'s before text")
            if not wrong or not any(contains(e["before"], w, m) for w in wrong for m in MODES):
                rep.error(f"{qid}: no wrong value (the old value) occurs in edit {e['id']}'s before text")
            if any(contains(e["after"], w, m) for w in wrong for m in MODES):
                rep.error(f"{qid}: a wrong value occurs in edit {e['id']}'s after text")
            for a in answers:
                where = [eid for eid, hay in pre.items() if contains_all_modes(hay, a)]
                if where:
                    rep.warn(f"{qid}: new value {a!r} already appears before the edit in {where} (check it answers another question)")
            for p in pieces:
                if not any(contains_all_modes(post[eid], p) for eid in ents):
                    rep.error(f"{qid}: evidence not found after the edits: {p[:80]!r}")
            continue

        hay = "\n".join(post[eid] for eid in ents)
        if not any_answer_in(hay, answers):
            rep.error(f"{qid}: no accepted answer occurs in {ents} (after edits)")
        found_in = set()
        for p in pieces:
            hits = [eid for eid in ents if contains_all_modes(post[eid], p)]
            if not hits:
                rep.error(f"{qid}: evidence not found in {ents}: {p[:80]!r}")
            found_in.update(hits)
        if kind == "two_page":
            if len(set(ents)) < 2:
                rep.error(f"{qid}: two_page question names fewer than two entities")
            elif len(found_in) < 2 or len(pieces) < 2:
                rep.error(f"{qid}: two_page evidence does not span two entities (found in {sorted(found_in)})")
        elif kind == "single" and len(ents) < 1:
            rep.error(f"{qid}: single question names no entity")

    for e in edits:
        if edit_hits[e["id"]] != 1:
            rep.error(f"edit {e['id']}: {edit_hits[e['id']]} edit questions (need exactly one)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--quiet", action="store_true", help="print only problems")
    ap.add_argument("--min-single", type=int, default=30)
    ap.add_argument("--min-two-page", type=int, default=12)
    ap.add_argument("--min-unanswerable", type=int, default=12)
    ap.add_argument("--min-edits", type=int, default=6)
    args = ap.parse_args(argv)
    rep = Report(args.quiet)
    records = check_records(args.folder, rep)
    edits, edited = check_edits(args.folder, records, rep)
    if len(edits) < args.min_edits:
        rep.error(f"only {len(edits)} edits (need {args.min_edits})")
    check_questions(
        args.folder, records, edits, edited, rep,
        {"single": args.min_single, "two_page": args.min_two_page, "unanswerable": args.min_unanswerable},
    )
    for w in rep.warnings:
        print(f"warning: {w}")
    for e in rep.errors:
        print(f"ERROR: {e}")
    print("OK" if not rep.errors else f"FAILED: {len(rep.errors)} problem(s)")
    return 0 if not rep.errors else 1


if __name__ == "__main__":
    sys.exit(main())
