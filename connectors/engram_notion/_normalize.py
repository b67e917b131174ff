"""Notion API objects -> Engram records. Pure functions: no I/O, no clock.

- a page (with its rendered block tree) -> ``Document`` (``doc_type`` ``page``, or ``row`` when its
  parent is a data source / database; every property rendered into ``properties`` and the text)
- a data source, or a 2022-06-28 database with its schema -> ``Document`` (``doc_type``
  ``data_source``); a 2025-09-03 database container -> ``Document`` (``doc_type`` ``database``)
- comments -> one ``Thread`` per discussion, attached to its page or block
- a page in the trash -> ``Tombstone`` (``trashed``); gone for good -> ``Tombstone`` (``deleted``)

Both API versions the connector meets are accepted: 2025-09-03/2026-03-11 (``in_trash``,
``data_source_id`` parents) and 2022-06-28 (``archived``, ``database_id`` parents, databases
that carry their own ``properties``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from engram_sdk.connectors import Document, Message, Person, Thread, Tombstone

from ._blocks import render_blocks
from ._text import property_to_text, rich_text

__all__ = [
    "PLATFORM",
    "comments_to_threads",
    "data_source_to_document",
    "database_to_document",
    "is_trashed",
    "page_parent",
    "page_title",
    "page_to_document",
    "parse_time",
    "person",
    "tombstone",
]

PLATFORM = "notion"
Users = Mapping[str, Mapping[str, Any]]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def is_trashed(obj: Mapping[str, Any]) -> bool:
    """In the trash: ``in_trash`` (2022-06-28 onward) or the older ``archived`` alias."""
    return bool(obj.get("in_trash") or obj.get("archived"))


def page_parent(obj: Mapping[str, Any]) -> tuple[str, str | None]:
    """(parent type, parent id): ``page_id``, ``data_source_id``, ``database_id``, ``block_id`` or
    ``workspace`` (id None). A row names its data source when the API version gives one."""
    parent = obj.get("parent") or {}
    kind = str(parent.get("type") or "")
    if kind == "workspace":
        return "workspace", None
    value = parent.get(kind)
    return kind, str(value) if value else None


def page_title(page: Mapping[str, Any]) -> str:
    """The title property's text (a non-database page has only ``title``; a row names it freely)."""
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, Mapping) and prop.get("type") == "title":
            return property_to_text(prop)
    if isinstance(page.get("title"), list):  # data source / database objects
        return rich_text(page["title"])
    child = page.get("child_page") or page.get("child_database")
    if isinstance(child, Mapping):
        return str(child.get("title") or "")
    return ""


def person(user: Mapping[str, Any] | None, users: Users | None = None, *,
           fallback_name: str | None = None) -> Person | None:
    if not user or not user.get("id"):
        return None
    known: Mapping[str, Any] = (users or {}).get(str(user["id"])) or {}
    name = user.get("name") or known.get("name") or fallback_name
    email = ((user.get("person") or {}).get("email")) or ((known.get("person") or {}).get("email"))
    return Person(id=str(user["id"]), name=name or None, email=email or None)


def _authors(obj: Mapping[str, Any], users: Users | None) -> list[Person]:
    out: list[Person] = []
    for key in ("created_by", "last_edited_by"):
        p = person(obj.get(key), users)
        if p is not None and all(p.id != q.id for q in out):
            out.append(p)
    return out


def _updated(obj: Mapping[str, Any]) -> datetime:
    dt = parse_time(obj.get("last_edited_time")) or parse_time(obj.get("created_time"))
    if dt is None:
        raise ValueError(f"Notion object {obj.get('id')} has neither last_edited_time nor created_time")
    return dt


def page_to_document(
    page: Mapping[str, Any],
    blocks: Sequence[Mapping[str, Any]] = (),
    *,
    workspace_id: str,
    users: Users | None = None,
    path: Sequence[str] = (),
) -> Document:
    """A page and its block tree (children attached under ``"children"``) as one Document.

    Rows (pages in a data source) get every property in ``properties`` and as ``Name: value``
    lines ahead of the body, so the text alone carries them."""
    kind, parent_id = page_parent(page)
    is_row = kind in ("data_source_id", "database_id")
    title = page_title(page)
    properties: dict[str, str] = {}
    prop_lines: list[str] = []
    for name, prop in (page.get("properties") or {}).items():
        if not isinstance(prop, Mapping) or prop.get("type") == "title":
            continue
        value = property_to_text(prop, users)
        properties[name] = value
        if value:
            prop_lines.append(f"{name}: {value}")
    body = render_blocks(blocks)
    text = "\n".join(prop_lines) + ("\n\n" if prop_lines and body else "") + body
    return Document(
        platform=PLATFORM,
        workspace_id=workspace_id,
        entity_id=str(page["id"]),
        parent_id=parent_id,
        url=page.get("url"),
        path=list(path),
        authors=_authors(page, users),
        created_at=parse_time(page.get("created_time")),
        updated_at=_updated(page),
        doc_type="row" if is_row else "page",
        title=title,
        text=text,
        properties=properties,
    )


def data_source_to_document(ds: Mapping[str, Any], *, workspace_id: str, path: Sequence[str] = ()) -> Document:
    """A data source (or a 2022-06-28 database, which carries its schema) as a Document: its title,
    description and the names and types of its properties."""
    _, parent_id = page_parent(ds)
    title = rich_text(ds.get("title"))
    description = rich_text(ds.get("description"))
    schema = ds.get("properties") or {}
    columns = [f"- {name} ({prop.get('type', '?')})" for name, prop in schema.items() if isinstance(prop, Mapping)]
    text = "\n".join(p for p in (description, "Properties:\n" + "\n".join(columns) if columns else "") if p)
    return Document(
        platform=PLATFORM,
        workspace_id=workspace_id,
        entity_id=str(ds["id"]),
        parent_id=parent_id,
        url=ds.get("url"),
        path=list(path),
        authors=_authors(ds, None),
        created_at=parse_time(ds.get("created_time")),
        updated_at=_updated(ds),
        doc_type="data_source",
        title=title,
        text=text,
        properties={name: str(prop.get("type", "")) for name, prop in schema.items() if isinstance(prop, Mapping)},
    )


def database_to_document(db: Mapping[str, Any], *, workspace_id: str, path: Sequence[str] = ()) -> Document:
    """A database. Under 2022-06-28 it holds its schema (rendered like a data source); from
    2025-09-03 on it is a container naming its data sources."""
    if "properties" in db and "data_sources" not in db:
        return data_source_to_document(db, workspace_id=workspace_id, path=path)
    _, parent_id = page_parent(db)
    title = rich_text(db.get("title"))
    description = rich_text(db.get("description"))
    sources = [f"- {s.get('name') or s.get('id')}" for s in db.get("data_sources") or ()]
    text = "\n".join(p for p in (description, "Data sources:\n" + "\n".join(sources) if sources else "") if p)
    return Document(
        platform=PLATFORM,
        workspace_id=workspace_id,
        entity_id=str(db["id"]),
        parent_id=parent_id,
        url=db.get("url"),
        path=list(path),
        authors=_authors(db, None),
        created_at=parse_time(db.get("created_time")),
        updated_at=_updated(db),
        doc_type="database",
        title=title,
        text=text,
    )


def comments_to_threads(
    comments: Iterable[Mapping[str, Any]],
    *,
    workspace_id: str,
    users: Users | None = None,
    title: str = "",
    path: Sequence[str] = (),
) -> list[Thread]:
    """One Thread per discussion: the oldest comment is the root, the rest its replies in order."""
    by_discussion: dict[str, list[Mapping[str, Any]]] = {}
    for c in comments:
        by_discussion.setdefault(str(c.get("discussion_id") or c["id"]), []).append(c)
    threads: list[Thread] = []
    for discussion, items in by_discussion.items():
        items = sorted(items, key=lambda c: (c.get("created_time") or "", str(c["id"])))
        messages = [_message(c, users) for c in items]
        root = messages[0].model_copy(update={"replies": messages[1:]})
        first = items[0]
        _, parent_id = page_parent(first)
        times = [_updated(c) for c in items]
        authors: list[Person] = []
        for m in messages:
            if m.author is not None and all(m.author.id != a.id for a in authors):
                authors.append(m.author)
        threads.append(
            Thread(
                platform=PLATFORM,
                workspace_id=workspace_id,
                entity_id=discussion,
                parent_id=parent_id,
                path=list(path),
                authors=authors,
                created_at=parse_time(first.get("created_time")),
                updated_at=max(times),
                thread_type="comments",
                title=title,
                messages=[root],
            )
        )
    return threads


def _message(comment: Mapping[str, Any], users: Users | None) -> Message:
    display = (comment.get("display_name") or {}).get("resolved_name")
    created = parse_time(comment.get("created_time")) or _updated(comment)
    edited = parse_time(comment.get("last_edited_time"))
    return Message(
        id=str(comment["id"]),
        author=person(comment.get("created_by"), users, fallback_name=display),
        created_at=created,
        edited_at=edited if edited and edited != created else None,
        text=rich_text(comment.get("rich_text")),
    )


def tombstone(
    obj: Mapping[str, Any] | str,
    *,
    workspace_id: str,
    reason: str = "deleted",
    updated_at: datetime | None = None,
) -> Tombstone:
    """A page (object, or bare id when it is gone for good) that left this team's view.

    ``reason`` is ``trashed``, ``deleted``, ``unshared`` or ``out_of_scope``. For a bare id the
    caller gives the time it noticed."""
    if isinstance(obj, str):
        if updated_at is None:
            raise ValueError("a tombstone for a bare id needs updated_at")
        return Tombstone(platform=PLATFORM, workspace_id=workspace_id, entity_id=obj, updated_at=updated_at,
                         reason=reason)  # type: ignore[arg-type]
    _, parent_id = page_parent(obj)
    return Tombstone(
        platform=PLATFORM,
        workspace_id=workspace_id,
        entity_id=str(obj["id"]),
        parent_id=parent_id,
        url=obj.get("url"),
        authors=_authors(obj, None),
        created_at=parse_time(obj.get("created_time")),
        updated_at=updated_at or _updated(obj),
        reason=reason,  # type: ignore[arg-type]
    )
