"""The Kestrel team's records (``records.jsonl`` beside this file, see README.md) and what the three
sandbox workspaces built from them share: the text split into blocks, and a thread's messages in order.

The records are the one source: each ``*_workspace`` module renders them in its platform's format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engram_sdk import parse_record

__all__ = ["RECORDS", "all_messages", "load_records", "text_blocks"]

RECORDS = Path(__file__).resolve().parent / "records.jsonl"  # scripts/build_sample_workspace.py writes it


def load_records() -> list[Any]:
    """The Kestrel team's records (Document / Thread / Edit), in file order."""
    return [parse_record(line) for line in RECORDS.read_text().splitlines() if line.strip()]


def text_blocks(text: str) -> list[tuple[str, str]]:
    """A record's text as the blocks a person would have typed: ``("bullet", line)`` for each
    ``- item`` line and ``("paragraph", text)`` for each run of wrapped lines (joined with spaces).
    The sandboxes' Kestrel workspaces render these in each platform's own format."""
    out: list[tuple[str, str]] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(("paragraph", " ".join(para)))
            para.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif line.startswith("- "):
            flush()
            out.append(("bullet", line[2:].strip()))
        else:
            para.append(line)
    flush()
    return out


def all_messages(messages: list[Any]) -> list[Any]:
    """A thread's messages and all their replies, depth first (each message before its replies)."""
    out = []
    for m in messages:
        out.append(m)
        out += all_messages(m.replies)
    return out
