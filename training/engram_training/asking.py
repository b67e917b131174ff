"""The base model writes questions about a unit in its own words (the issue's second way).

The parse (``questions``) can only ask with the sentence's own words; colleagues use others. Here
the base model reads one note (a unit's statement under its page title) and writes a short
question a colleague might ask, once per style. A question is kept only when

- it is a question (a question word first, a question mark last, 4-25 words, one line) that
  shares a content word with the note (not a remark about the note, which a 135M model often
  writes instead), and
- the base model, with the note in its prompt, answers it with a content word of the note that the
  question does not already contain: the note answers it. That word is the expected answer when
  the question serves as a recall probe.

Greedy decoding in a fixed order, so the same notes give the same questions in every process (a
killed run resumes on the same dataset digest). Cost: two short generations per note and style,
batched; measured in docs/training.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .infer import generate, prompt_ids

STYLES = (
    "Write one short question a colleague would ask that this note answers. Use different words from the note.",
    "Write one short question a new member of the team might ask, which this note answers.",
)
_WH = {"what", "who", "whom", "whose", "when", "where", "which", "how", "why", "is", "are", "was", "were", "does",
       "do", "did", "can", "will", "should", "has", "have"}
_STOP = {"the", "a", "an", "of", "to", "in", "on", "at", "for", "and", "or", "is", "are", "was", "were", "be", "by",
         "with", "it", "its", "this", "that", "our", "we", "you", "your", "they", "their", "what", "who", "when",
         "where", "which", "how", "why", "does", "do", "did", "can", "will", "has", "have", "from", "as", "about",
         "there", "name", "person", "team", "note", "answer", "question"}
_WORD = re.compile(r"[A-Za-z0-9£$€][A-Za-z0-9£$€:.,'-]*[A-Za-z0-9]|[A-Za-z0-9]")


@dataclass(frozen=True)
class Written:
    question: str
    answer: str  # a word of the note the base model answered with, absent from the question


def _words(text: str) -> list[str]:
    return [w.lower().rstrip(".,:") for w in _WORD.findall(text)]


def _content(text: str) -> set[str]:
    return {w for w in _words(text) if w not in _STOP and (len(w) > 2 or w.isdigit())}


def _well_formed(q: str, note: str) -> bool:
    words = q.split()
    if not 4 <= len(words) <= 25 or not q.endswith("?") or q.count("?") > 1:
        return False
    if words[0].lower().strip(",") not in _WH:
        return False
    return bool(_content(q) & _content(note))


def _chat_prompt(tokenizer: Any, text: str) -> list[int]:
    out = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                        add_generation_prompt=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def write_questions(model: Any, tokenizer: Any, notes: list[str], *, styles: int = len(STYLES),
                    batch_size: int = 16, device: str = "cpu") -> list[list[Written]]:
    """For each note, the questions the base model wrote about it that survive both checks (at
    most one per style, duplicates dropped)."""
    styles = max(0, min(styles, len(STYLES)))
    jobs = [(i, s) for i in range(len(notes)) for s in range(styles)]
    if not jobs:
        return [[] for _ in notes]
    asked = generate(model, tokenizer,
                     [_chat_prompt(tokenizer, f"{STYLES[s]}\n\nNote: {notes[i]}\n\nQuestion:") for i, s in jobs],
                     max_new_tokens=40, batch_size=batch_size, device=device)
    candidates: list[tuple[int, str]] = []
    for (i, _), (text, _n) in zip(jobs, asked):
        q = re.sub(r"^\s*(\d+[.)]|Q:|Question:)\s*", "", text.strip().split("\n")[0]).strip()
        if _well_formed(q, notes[i]):  # checked before the answering pass to save its cost
            candidates.append((i, q))
    answers = generate(model, tokenizer, [prompt_ids(tokenizer, q, notes[i]) for i, q in candidates],
                       max_new_tokens=32, batch_size=batch_size, device=device) if candidates else []
    out: list[list[Written]] = [[] for _ in notes]
    for (i, q), (a, _n) in zip(candidates, answers):
        w = keep(notes[i], q, a)
        if w and all(q.lower() != o.question.lower() for o in out[i]):
            out[i].append(w)
    return out


def keep(note: str, question: str, answer: str) -> Written | None:
    """The question, if it is one the note answers: the base model's ``answer`` (given the note)
    holds a content word of the note the question lacks; that word, as the note writes it."""
    if not _well_formed(question, note):
        return None
    note_words = _content(note)
    new = [w for w in _words(answer) if w in note_words and w not in _content(question)]
    if not new:
        return None
    shown = next((w.rstrip(".,:") for w in _WORD.findall(note) if w.lower().rstrip(".,:") == new[0]), new[0])
    return Written(question, shown)
