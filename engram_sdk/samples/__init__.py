"""Sample workspaces shipped with the SDK (see README.md beside this file), and the repository's
examples.

``tidewater`` and ``brightmash``: evaluation workspaces with hand-written questions (``engram bench
train``). ``marrowby``: a starting workspace and thirty hand-written days of changes and questions
(``days.jsonl``, ``engram bench continual``). The Kestrel team of ``engram demo`` is not shipped: it lives with the demo in a clone's
``examples/kestrel_demo`` (``load_example("kestrel_demo").load_records()``).
"""

from __future__ import annotations

from importlib import resources

from .._events import TrainingEvent, build_events
from .._examples import EXAMPLES_ENV, find_example, load_example
from .._records import Document, Edit, Thread, Tombstone, parse_record
from .._signing import Keyring
from .._store import AppendResult, EventStore

__all__ = ["EXAMPLES_ENV", "SOURCES", "find_example", "ingest", "load_example", "load_records", "sign_records"]

Record = Document | Thread | Edit | Tombstone

SOURCES = {"notion": "notion://workspace/{}", "microsoft": "msgraph://tenant/{}", "harvey": "harvey://org/{}"}


def load_records(name: str) -> list[Record]:
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


def ingest(store: EventStore, keyring: Keyring, *, team_id: str, records: list[Record]) -> AppendResult:
    """Sign a sample workspace's records for ``team_id`` and append them to the store."""
    return store.append(sign_records(records, keyring, team_id=team_id))

