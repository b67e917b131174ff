"""The Kestrel team (``records.jsonl``) as a Notion sandbox workspace.

The records stay the one source: each Notion ``Document`` becomes a page whose blocks are its text
(``text_blocks``: paragraphs and bulleted items), nested under pages named by its ``path``
(*Fennwick Labs / Kestrel / Projects*); the comment ``Thread`` becomes one discussion on its page.
A restricted record (only a few people may open it) goes under a page outside the team's scope, as
an HR page would sit outside the team's teamspace. The sample's ``Edit`` records are not part of
the workspace: the workspace holds the text *before* them, and ``kestrel_edits`` gives the sandbox
operations that make them, so a sync sees the edit happen the way the connector would.

Ids are stable (uuid5 of the sample's ids), so a saved workspace and a fresh one agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from engram_notion._workspace import rich  # no public name: the API's rich-text shape
from engram_sdk import Document, Edit, Thread

from .records import all_messages, load_records, text_blocks

__all__ = ["KESTREL_TOKEN", "SandboxEdit", "kestrel_edits", "kestrel_scope_root", "kestrel_workspace",
           "with_generated_pages"]

KESTREL_TOKEN = "secret_kestrel_demo"  # the internal integration token the workspace accepts
_NS = uuid.UUID("5f0c2a52-7e0b-4c4e-9d0e-6b6b4b2d0a11")
TEAM_PAGE = ("Fennwick Labs", "Kestrel")  # the page the team's connection is scoped to
RESTRICTED_PAGE = ("Fennwick Labs", "People (HR only)")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass(frozen=True)
class SandboxEdit:
    """One sandbox operation (``POST /_sandbox/ops/<op>`` with ``body``) that makes a sample edit."""

    entity_id: str  # the sample record's entity id
    field: str
    before: str
    after: str
    op: str
    body: dict[str, Any]


def kestrel_scope_root() -> str:
    """The id of the *Kestrel* page: ``--scope page:<id>`` connects the team's pages only."""
    return _id("path", *TEAM_PAGE)


def _person(p: Any) -> dict[str, Any]:
    return {"object": "user", "id": _id("user", p.id)}


def _block(entity: str, i: int, kind: str, text: str) -> dict[str, Any]:
    t = "bulleted_list_item" if kind == "bullet" else "paragraph"
    return {"object": "block", "id": _id("block", entity, str(i)), "type": t, t: {"rich_text": rich(text)}}


def kestrel_workspace(records: list[Any] | None = None) -> dict[str, Any]:
    """The Notion sandbox workspace of the sample team (see the module docstring)."""
    records = [r for r in (records if records is not None else load_records()) if r.platform == "notion"]
    users: dict[str, dict[str, Any]] = {}
    for r in records:
        people = list(r.authors) + ([m.author for m in all_messages(r.messages)] if isinstance(r, Thread) else [])
        for p in people:
            if p is not None and p.id not in users:
                users[p.id] = {"object": "user", "id": _id("user", p.id), "name": p.name or p.id, "type": "person",
                               "person": {"email": p.email or f"{p.id}@example.invalid"}}
    containers: dict[tuple[str, ...], dict[str, Any]] = {}
    top: list[dict[str, Any]] = []

    def container(path: tuple[str, ...]) -> dict[str, Any]:
        if path not in containers:
            page = {"object": "page", "id": _id("path", *path), "created_time": "2026-09-01T09:00:00.000Z",
                    "properties": {"title": {"type": "title", "title": rich(path[-1])}}, "children": []}
            containers[path] = page
            (container(path[:-1])["children"] if len(path) > 1 else top).append(page)
        return containers[path]

    container(TEAM_PAGE)
    for r in records:
        if not isinstance(r, Document):
            continue
        path = RESTRICTED_PAGE if r.restricted else tuple(r.path) or TEAM_PAGE
        author = _person(r.authors[0]) if r.authors else None
        page = {"object": "page", "id": _id("page", r.entity_id),
                "created_time": (r.created_at or r.updated_at).isoformat(),
                "last_edited_time": r.updated_at.isoformat(),
                "properties": {"title": {"type": "title", "title": rich(r.title)}},
                "children": [_block(r.entity_id, i, kind, text)
                             for i, (kind, text) in enumerate(text_blocks(r.text))]}
        if author:
            page["created_by"] = page["last_edited_by"] = author
        container(path)["children"].append(page)
    comments = []
    for r in records:
        if not isinstance(r, Thread) or not r.parent_id:
            continue
        discussion = _id("discussion", r.entity_id)
        for m in all_messages(r.messages):
            comments.append({"object": "comment", "id": _id("comment", m.id), "discussion_id": discussion,
                             "parent": {"type": "page_id", "page_id": _id("page", r.parent_id)},
                             "created_time": m.created_at.isoformat(), "last_edited_time": m.created_at.isoformat(),
                             "created_by": _person(m.author) if m.author else None, "rich_text": rich(m.text)})
    return {"workspace": {"id": _id("workspace", records[0].workspace_id if records else "kestrel"),
                          "name": "Fennwick Labs"},
            "tokens": [KESTREL_TOKEN], "users": list(users.values()), "pages": top, "databases": [],
            "comments": comments}


def kestrel_edits(records: list[Any] | None = None) -> list[SandboxEdit]:
    """The sample's Notion edits as ``edit_block`` operations on the workspace above, in order."""
    records = records if records is not None else load_records()
    docs = {r.entity_id: r for r in records if isinstance(r, Document) and r.platform == "notion"}
    out = []
    for e in records:
        if not isinstance(e, Edit) or e.platform != "notion" or e.entity_id not in docs or e.before is None:
            continue
        needle = f"{e.field}: {e.before}"
        for i, (kind, text) in enumerate(text_blocks(docs[e.entity_id].text)):
            if needle in text:
                out.append(SandboxEdit(e.entity_id, e.field, e.before, e.after, "edit_block",
                                       {"id": _id("block", e.entity_id, str(i)),
                                        "text": text.replace(needle, f"{e.field}: {e.after}")}))
                break
        else:
            raise ValueError(f"the sample edit of {e.entity_id} ({needle!r}) matches no block of its page")
    return out


def with_generated_pages(workspace: dict[str, Any], count: int) -> dict[str, Any]:
    """``workspace`` with ``count`` more pages under the *Kestrel* page, each stating two facts (a
    bigger workspace of the same shape, for measuring what grows with the workspace's size)."""
    if count <= 0:
        return workspace
    team = _find(workspace["pages"], kestrel_scope_root())
    if team is None:
        raise ValueError("the workspace has no Kestrel page")
    for i in range(count):
        entity = f"generated-{i:05d}"
        text = (f"Notes on service {i} of the checkout platform.\n\n- Service owner: Engineer {i % 37}\n"
                f"- Alert channel: checkout-alerts-{i}\n\nThe service is deployed with the weekly release train.")
        team["children"].append({
            "object": "page", "id": _id("page", entity), "created_time": "2026-10-03T09:00:00.000Z",
            "properties": {"title": {"type": "title", "title": rich(f"Checkout service {i}")}},
            "children": [_block(entity, j, kind, t) for j, (kind, t) in enumerate(text_blocks(text))]})
    return workspace


def _find(pages: list[dict[str, Any]], page_id: str) -> dict[str, Any] | None:
    stack = list(pages)
    while stack:
        p = stack.pop()
        if p.get("id") == page_id:
            return p
        stack.extend(c for c in p.get("children") or () if c.get("object") == "page")
    return None
