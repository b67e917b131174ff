"""Small builders for test data (records and signed events)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engram_sdk import Document, Keyring, build_events

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def make_doc(i: int = 0, text: str | None = None, **kw) -> Document:
    fields = dict(
        platform="notion",
        workspace_id="ws-1",
        entity_id=f"page-{i}",
        parent_id="root",
        title=f"Page {i}",
        text=text if text is not None else f"Fact number {i}: the Northwind launch review is on day {i}.",
        updated_at=T0 + timedelta(minutes=i),
    )
    fields.update(kw)
    return Document(**fields)


def signed_events(keyring: Keyring, n: int, team: str = "acme", start: int = 0, **kw):
    out = []
    for i in range(start, start + n):
        for ev in build_events(make_doc(i, **kw), team_id=team, connection_id=f"{team}-notion",
                               source="notion://workspace/ws-1"):
            out.append(keyring.sign(ev))
    return out
