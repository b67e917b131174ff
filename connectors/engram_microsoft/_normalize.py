"""Pure functions from Microsoft Graph JSON to Engram records. No I/O, no clock.

    channel message + replies  -> Thread      (system messages skipped, deleted root -> Tombstone)
    edited message             -> Edit        (before from the caller's last sighting, else unknown)
    OneNote page + its HTML    -> Document    (doc_type "note")
    SharePoint site page       -> Document    (doc_type "site_page", text web parts of canvasLayout)
    drive item                 -> Document    (doc_type "file"), Tombstone (deleted facet) or None (folder)

Entity ids are Graph paths relative to ``/v1.0`` (``teams/{t}/channels/{c}/messages/{m}``,
``onenote/pages/{p}``, ``sites/{s}/pages/{p}``, ``drives/{d}/items/{i}``), so a change
notification's ``resource`` maps to the same id (``entity_for_resource``). ``workspace_id`` is
the tenant. Graph omits timestamps on some items (deleted drive items, documentation examples);
those get ``Origin.observed_at``, the time the connector saw the item.

``revision`` is left unset: Graph's etags do not cover everything a record holds (a thread's
replies, a file's extracted text), so event ids come from the record digest instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from engram_sdk.connectors import Document, Edit, Message, Person, Thread, Tombstone

from ._html import html_to_text

__all__ = [
    "PLATFORM",
    "Origin",
    "ResourceRef",
    "channel_thread",
    "drive_item_record",
    "entity_for_resource",
    "is_system_message",
    "message_edits",
    "message_text",
    "onenote_page_document",
    "parse_graph_time",
    "site_page_document",
    "thread_entity_id",
]

PLATFORM = "microsoft"

_USER_MESSAGE_TYPES = {"message"}


@dataclass(frozen=True)
class Origin:
    """Where records come from: the tenant, and when the connector saw them."""

    tenant_id: str
    observed_at: datetime
    path: tuple[str, ...] = field(default=())  # container titles, e.g. (team name, channel name)


def parse_graph_time(value: str | None) -> datetime | None:
    """Graph timestamps: ``2021-03-29T03:49:13.153Z``, 7 fractional digits, or an offset."""
    if not value:
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    m = re.match(r"^(.*?\.)(\d+)(.*)$", v)
    if m:  # Python accepts at most 6 fractional digits
        v = m.group(1) + m.group(2)[:6].ljust(6, "0") + m.group(3)
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


# --- people ------------------------------------------------------------------------------------


def _person(identity_set: Mapping[str, Any] | None) -> Person | None:
    """A Graph identitySet (``{"user": {...}}``, ``{"application": {...}}``) as a Person."""
    if not identity_set:
        return None
    for kind in ("user", "application", "device"):
        ident = identity_set.get(kind)
        if not ident:
            continue
        pid = ident.get("id") or ident.get("email") or ident.get("displayName")
        if not pid:
            continue
        return Person(id=pid, name=ident.get("displayName"), email=ident.get("email"))
    return None


def _people(*identity_sets: Mapping[str, Any] | None) -> list[Person]:
    seen: dict[str, Person] = {}
    for ids in identity_sets:
        p = _person(ids)
        if p is not None and p.id not in seen:
            seen[p.id] = p
    return list(seen.values())


# --- Teams channel messages ------------------------------------------------------------------


def is_system_message(message: Mapping[str, Any]) -> bool:
    """System events (member added, description changed...): ``systemEventMessage`` or, without
    the ``Prefer: include-unknown-enum-members`` header, ``unknownFutureValue``."""
    if message.get("messageType", "message") not in _USER_MESSAGE_TYPES:
        return True
    body = (message.get("body") or {}).get("content") or ""
    return body.strip().lower().startswith("<systemeventmessage")


def message_text(message: Mapping[str, Any]) -> str:
    """The message body as text: HTML rendered, ``<at>`` mentions as ``@Name``, attachments named."""
    body = message.get("body") or {}
    content = body.get("content") or ""
    text = html_to_text(content) if body.get("contentType", "html") == "html" else content.strip()
    names = [a.get("name") for a in message.get("attachments") or [] if a.get("name")]
    if names:
        text = (text + "\n" if text else "") + "\n".join(f"[attachment: {n}]" for n in names)
    return text


def _container(message: Mapping[str, Any]) -> str:
    ident = message.get("channelIdentity") or {}
    if ident.get("teamId") and ident.get("channelId"):
        return f"teams/{ident['teamId']}/channels/{ident['channelId']}"
    if message.get("chatId"):
        return f"chats/{message['chatId']}"
    raise ValueError(f"message {message.get('id')!r} has neither channelIdentity nor chatId")


def thread_entity_id(message: Mapping[str, Any]) -> str:
    """The thread a message belongs to: its root (``replyToId``) or itself."""
    root = message.get("replyToId") or message["id"]
    return f"{_container(message)}/messages/{root}"


def _message(msg: Mapping[str, Any], replies: list[Message] | None = None) -> Message:
    created = parse_graph_time(msg.get("createdDateTime"))
    if created is None:
        raise ValueError(f"message {msg.get('id')!r} has no createdDateTime")
    return Message(
        id=msg["id"],
        author=_person(msg.get("from")),
        created_at=created,
        edited_at=parse_graph_time(msg.get("lastEditedDateTime")),
        text=message_text(msg),
        replies=replies or [],
    )


def _live_replies(replies: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    live = [r for r in replies if not r.get("deletedDateTime") and not is_system_message(r)]
    return sorted(live, key=lambda r: (r.get("createdDateTime") or "", r["id"]))


def channel_thread(
    root: Mapping[str, Any],
    origin: Origin,
    replies: Iterable[Mapping[str, Any]] | None = None,
) -> Thread | Tombstone | None:
    """A root message and its replies as one Thread.

    ``replies`` defaults to the ones inlined by ``$expand=replies``; pass the full list when
    ``replies@odata.nextLink`` had more. A deleted root gives a Tombstone for the thread, a
    system root gives None; deleted and system replies are left out of the thread.
    """
    if root.get("replyToId"):
        raise ValueError(f"message {root['id']!r} is a reply to {root['replyToId']!r}, not a thread root")
    entity_id = thread_entity_id(root)
    parent_id = _container(root)
    if root.get("deletedDateTime"):
        return Tombstone(
            platform=PLATFORM,
            workspace_id=origin.tenant_id,
            entity_id=entity_id,
            parent_id=parent_id,
            path=list(origin.path),
            updated_at=parse_graph_time(root["deletedDateTime"]) or origin.observed_at,
            reason="deleted",
        )
    if is_system_message(root):
        return None
    reply_list = _live_replies(root.get("replies") or [] if replies is None else replies)
    messages = [_message(root, [_message(r) for r in reply_list])]
    times = [parse_graph_time(m.get("lastModifiedDateTime") or m.get("createdDateTime")) for m in [root, *reply_list]]
    authors = _people(root.get("from"), *(r.get("from") for r in reply_list))
    return Thread(
        platform=PLATFORM,
        workspace_id=origin.tenant_id,
        entity_id=entity_id,
        parent_id=parent_id,
        url=root.get("webUrl"),
        path=list(origin.path),
        authors=authors,
        created_at=parse_graph_time(root.get("createdDateTime")),
        updated_at=max(t for t in times if t is not None),
        thread_type="channel_thread",
        title=(root.get("subject") or "").strip(),
        messages=messages,
    )


def message_edits(
    root: Mapping[str, Any],
    origin: Origin,
    previous: Mapping[str, str],
    replies: Iterable[Mapping[str, Any]] | None = None,
) -> list[Edit]:
    """An Edit for each edited message of a thread whose text differs from the last sighting.

    ``previous`` maps message id -> text as last stored. A message edited since that sighting
    gives an Edit with both sides; an edited message never seen before gives one with
    ``before_known=False``; a message whose text equals its last sighting gives nothing, so
    re-reading the same page never records the same edit twice.
    """
    if root.get("deletedDateTime") or is_system_message(root):
        return []
    thread_id = thread_entity_id(root)
    edits: list[Edit] = []
    for msg in [root, *_live_replies(root.get("replies") or [] if replies is None else replies)]:
        edited = parse_graph_time(msg.get("lastEditedDateTime"))
        if edited is None:
            continue
        after = message_text(msg)
        before = previous.get(msg["id"])
        if before == after:
            continue
        is_root = msg is root
        edits.append(
            Edit(
                platform=PLATFORM,
                workspace_id=origin.tenant_id,
                entity_id=thread_id if is_root else f"{thread_id}/replies/{msg['id']}",
                parent_id=_container(root) if is_root else thread_id,
                url=msg.get("webUrl"),
                path=list(origin.path),
                authors=_people(msg.get("from")),
                created_at=parse_graph_time(msg.get("createdDateTime")),
                updated_at=edited,
                field="text",
                before=before,
                before_known=before is not None,
                after=after,
                author=_person(msg.get("from")),
                title=(root.get("subject") or "").strip(),
            )
        )
    return edits


# --- OneNote ---------------------------------------------------------------------------------


_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def onenote_page_document(page: Mapping[str, Any], origin: Origin, html: str | None = None) -> Document:
    """A OneNote page (list item) and its content HTML (``/pages/{id}/content``) as a Document.

    ``html`` defaults to the page's inline ``content``. The id falls back to the page's
    ``contentUrl`` / ``self`` when the listing carries none (documentation examples).
    """
    page_id = page.get("id") or page.get("contentUrl") or page.get("self")
    if not page_id:
        raise ValueError("OneNote page has no id, contentUrl or self")
    content = page.get("content") if html is None else html
    title = page.get("title") or ""
    if not title and content:
        m = _TITLE_RE.search(content)
        title = html_to_text(m.group(1)) if m else ""
    section = page.get("parentSection") or {}
    notebook = page.get("parentNotebook") or {}
    path = list(origin.path) or [n for n in (notebook.get("displayName"), section.get("displayName")) if n]
    links = page.get("links") or {}
    web = (links.get("oneNoteWebUrl") or {}).get("href")
    updated = parse_graph_time(page.get("lastModifiedDateTime")) or origin.observed_at
    return Document(
        platform=PLATFORM,
        workspace_id=origin.tenant_id,
        entity_id=f"onenote/pages/{page_id}",
        parent_id=f"onenote/sections/{section['id']}" if section.get("id") else None,
        url=web,
        path=path,
        authors=_people(page.get("createdBy"), page.get("lastModifiedBy")),
        created_at=parse_graph_time(page.get("createdDateTime")),
        updated_at=updated,
        doc_type="note",
        title=title,
        text=html_to_text(content),
        mime_type="text/html",
    )


# --- SharePoint site pages -------------------------------------------------------------------


def _webpart_text(part: Mapping[str, Any]) -> str:
    kind = (part.get("@odata.type") or "").lower()
    if kind.endswith("textwebpart"):
        return html_to_text(part.get("innerHtml"))
    data = part.get("data") or {}
    bits = [data.get("title"), data.get("description")]
    spc = data.get("serverProcessedContent") or {}
    for entry in spc.get("searchablePlainTexts") or []:
        bits.append(entry.get("value") if isinstance(entry, Mapping) else entry)
    for entry in spc.get("htmlStrings") or []:
        bits.append(html_to_text(entry.get("value")) if isinstance(entry, Mapping) else html_to_text(entry))
    return "\n".join(b for b in bits if b)


def _canvas_text(canvas: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for section in canvas.get("horizontalSections") or []:
        for column in section.get("columns") or []:
            parts.extend(_webpart_text(w) for w in column.get("webparts") or [])
    vertical = canvas.get("verticalSection") or {}
    parts.extend(_webpart_text(w) for w in vertical.get("webparts") or [])
    return "\n\n".join(p for p in parts if p)


def site_page_document(page: Mapping[str, Any], origin: Origin, site_id: str | None = None) -> Document:
    """A SharePoint site page as a Document. With ``$expand=canvasLayout`` the text is its web
    parts; without, the page's description (what a listing carries)."""
    site = site_id or (page.get("parentReference") or {}).get("siteId")
    if not site:
        raise ValueError(f"site page {page.get('id')!r}: no site id (pass site_id)")
    canvas = page.get("canvasLayout")
    title_area = page.get("titleArea") or {}
    head = [t for t in (title_area.get("textAboveTitle"),) if t]
    body = _canvas_text(canvas) if canvas else ""
    if not body:
        body = page.get("description") or ""
    text = "\n\n".join(t for t in [*head, body] if t)
    props = {
        k: str(v)
        for k, v in {
            "name": page.get("name"),
            "page_layout": page.get("pageLayout"),
            "promotion_kind": page.get("promotionKind"),
            "publishing_state": (page.get("publishingState") or {}).get("level"),
            "description": page.get("description") if canvas else None,
        }.items()
        if v
    }
    parent = page.get("parentReference") or {}
    return Document(
        platform=PLATFORM,
        workspace_id=origin.tenant_id,
        entity_id=f"sites/{site}/pages/{page['id']}",
        parent_id=f"sites/{site}/lists/{parent['listId']}" if parent.get("listId") else f"sites/{site}",
        url=page.get("webUrl"),
        path=list(origin.path),
        authors=_people(page.get("createdBy"), page.get("lastModifiedBy")),
        created_at=parse_graph_time(page.get("createdDateTime")),
        updated_at=parse_graph_time(page.get("lastModifiedDateTime")) or origin.observed_at,
        doc_type="site_page",
        title=page.get("title") or title_area.get("title") or page.get("name") or "",
        text=text,
        mime_type="text/html",
        properties=props,
    )


# --- drive items -----------------------------------------------------------------------------


def _drive_path(parent: Mapping[str, Any]) -> list[str]:
    path = parent.get("path") or ""
    if ":" in path:  # "/drive/root:/Folder/Sub" or "/drives/{id}/root:/Folder"
        path = path.split(":", 1)[1]
    return [unquote(p) for p in path.split("/") if p]


def drive_item_record(
    item: Mapping[str, Any],
    origin: Origin,
    drive_id: str | None = None,
    text: str | None = None,
) -> Document | Tombstone | None:
    """A driveItem from a delta page: a deleted facet gives a Tombstone, a file a Document
    (``text`` is what the connector extracted from its content, or None when the format is
    kept as metadata only), and a folder, the root or a package gives None."""
    parent = item.get("parentReference") or {}
    drive = drive_id or parent.get("driveId")
    if not drive:
        raise ValueError(f"drive item {item.get('id')!r}: no drive id (pass drive_id)")
    entity_id = f"drives/{drive}/items/{item['id']}"
    parent_id = f"drives/{drive}/items/{parent['id']}" if parent.get("id") else None
    path = list(origin.path) + _drive_path(parent)
    if "deleted" in item or "@removed" in item:
        return Tombstone(
            platform=PLATFORM,
            workspace_id=origin.tenant_id,
            entity_id=entity_id,
            parent_id=parent_id,
            path=path,
            updated_at=parse_graph_time(item.get("lastModifiedDateTime")) or origin.observed_at,
            reason="deleted",
        )
    if "file" not in item:
        return None  # folder, root, package, remote item: containers, not content
    file_facet = item.get("file") or {}
    props = {
        k: str(v)
        for k, v in {
            "size": item.get("size"),
            "ctag": item.get("cTag"),
            "quickxor_hash": (file_facet.get("hashes") or {}).get("quickXorHash"),
            "content": "extracted" if text is not None else "metadata_only",
        }.items()
        if v is not None
    }
    return Document(
        platform=PLATFORM,
        workspace_id=origin.tenant_id,
        entity_id=entity_id,
        parent_id=parent_id,
        url=item.get("webUrl"),
        path=path,
        authors=_people(item.get("createdBy"), item.get("lastModifiedBy")),
        created_at=parse_graph_time(item.get("createdDateTime")),
        updated_at=parse_graph_time(item.get("lastModifiedDateTime")) or origin.observed_at,
        doc_type="file",
        title=item.get("name") or "",
        text=text or "",
        mime_type=file_facet.get("mimeType"),
        properties=props,
    )


# --- change-notification resources -----------------------------------------------------------


@dataclass(frozen=True)
class ResourceRef:
    """What a change notification's ``resource`` points at, as the entity to refetch."""

    kind: str  # "channel_message", "chat_message", "drive", "drive_item", "other"
    entity_id: str | None  # the record entity id (thread for messages and replies)
    ids: dict[str, str]


def _segments(resource: str) -> list[tuple[str, str | None]]:
    """``teams('a')/channels('b')/messages('c')`` or ``teams/a/channels/b`` -> [(name, id), ...]."""
    r = resource.strip().lstrip("/")
    r = re.sub(r"^(?:v1\.0|beta)/", "", r)
    out: list[tuple[str, str | None]] = []
    parts = r.split("/")
    i = 0
    while i < len(parts):
        seg = parts[i]
        m = re.fullmatch(r"([A-Za-z]+)\('([^']*)'\)", seg)
        if m:
            out.append((m.group(1).lower(), unquote(m.group(2))))
            i += 1
            continue
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if nxt is not None and not re.fullmatch(r"[A-Za-z]+(\('.*'\))?", nxt):
            out.append((seg.lower(), unquote(nxt)))
            i += 2
        else:
            out.append((seg.lower(), None))
            i += 1
    return out


def entity_for_resource(resource: str) -> ResourceRef:
    """Map a notification ``resource`` (or ``resourceData.@odata.id``) to the entity to refetch.

    A reply maps to its thread, since replies are stored inside their root's Thread.
    """
    segs = dict(_segments(resource))
    if "teams" in segs and "channels" in segs and segs.get("messages"):
        ids = {"team": segs["teams"] or "", "channel": segs["channels"] or "", "message": segs["messages"] or ""}
        if segs.get("replies"):
            ids["reply"] = segs["replies"] or ""
        entity = f"teams/{ids['team']}/channels/{ids['channel']}/messages/{ids['message']}"
        return ResourceRef("channel_message", entity, ids)
    if "chats" in segs and segs.get("messages"):
        ids = {"chat": segs["chats"] or "", "message": segs["messages"] or ""}
        return ResourceRef("chat_message", f"chats/{ids['chat']}/messages/{ids['message']}", ids)
    if "drives" in segs and segs.get("items"):
        ids = {"drive": segs["drives"] or "", "item": segs["items"] or ""}
        return ResourceRef("drive_item", f"drives/{ids['drive']}/items/{ids['item']}", ids)
    if "drives" in segs:
        return ResourceRef("drive", None, {"drive": segs["drives"] or ""})
    return ResourceRef("other", None, {k: v or "" for k, v in segs.items()})
