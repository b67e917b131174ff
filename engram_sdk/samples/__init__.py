"""Sample workspaces shipped with the SDK (see README.md beside this file).

``kestrel``: ~30 records about a fictional team, written as connector records (Notion pages and
comments, Microsoft Teams threads, OneNote and SharePoint pages, Harvey review-table rows, queries
and edits). The benchmark, the demo and the sandboxes all read it from here.
"""

from __future__ import annotations

from importlib import resources

from .._events import TrainingEvent, build_events
from .._records import Document, Edit, Thread, Tombstone, parse_record
from .._signing import Keyring
from .._store import AppendResult, EventStore

__all__ = ["SOURCES", "ingest", "load_records", "sign_records", "text_blocks"]

Record = Document | Thread | Edit | Tombstone

SOURCES = {"notion": "notion://workspace/{}", "microsoft": "msgraph://tenant/{}", "harvey": "harvey://org/{}"}


def load_records(name: str = "kestrel") -> list[Record]:
    text = resources.files("engram_sdk.samples").joinpath(name, "records.jsonl").read_text()
    return [parse_record(line) for line in text.splitlines() if line.strip()]


def sign_records(records: list[Record], keyring: Keyring, *, team_id: str, connection_prefix: str = "sample") \
        -> list[TrainingEvent]:
    """Wrap each record in events for ``team_id`` (one connection per platform) and sign them."""
    out = []
    for r in records:
        source = SOURCES.get(r.platform, r.platform + "://workspace/{}").format(r.workspace_id)
        for ev in build_events(r, team_id=team_id, connection_id=f"{connection_prefix}-{r.platform}", source=source):
            out.append(keyring.sign(ev))
    return out


def ingest(store: EventStore, keyring: Keyring, *, team_id: str, records: list[Record] | None = None,
           name: str = "kestrel") -> AppendResult:
    """Sign a sample workspace's records for ``team_id`` and append them to the store."""
    return store.append(sign_records(records if records is not None else load_records(name), keyring,
                                     team_id=team_id))


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
