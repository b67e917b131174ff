"""The Notion sandbox's in-memory workspace: the JSON file's nested objects plus flat indexes.

Workspace file (the API's own object shapes; every field Notion would add is filled in on load)::

    {"workspace": {"id": ..., "name": ...},            # optional
     "bot": {user object of the integration},           # optional
     "tokens": ["secret_..."],                          # accepted bearer tokens (default one token)
     "oauth_clients": [{"client_id", "client_secret", "redirect_uris": [...]}],   # optional
     "capabilities": {"read_comments": true, "read_user_information": true},     # optional; false -> 403
     "users": [user objects],
     "pages": [page objects, each with "children": [block objects (each with its own "children"),
                                                    page objects (child pages),
                                                    database objects (child databases)]],
     "databases": [database objects, each with "data_sources": [data source objects,
                                                                  each with "rows": [page objects]]],
     "comments": [comment objects]}

A ``child_page`` block and its page are one entity: the page object sits in its parent's
``children`` and is listed there as a ``child_page`` block. Entities are edited in place, so
``GET /_sandbox/workspace`` always shows the current state in the same format.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Entity", "Index", "block_view", "build_index", "canon_time", "iso", "new_id", "page_view", "rich", "title_of",
]

DEFAULT_TOKEN = "secret_sandbox"
EPOCH = "2026-01-01T00:00:00.000Z"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def canon_time(value: str) -> str:
    """An ISO time in the API's own form (``...T..:..:..000Z``), so string order is time order."""
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return iso(dt.replace(microsecond=0))


def new_id() -> str:
    return str(uuid.uuid4())


def rich(text: str) -> list[dict[str, Any]]:
    """A rich-text array as the API returns it, for one plain string."""
    if not text:
        return []
    return [{"type": "text", "text": {"content": text, "link": None},
             "annotations": {"bold": False, "italic": False, "strikethrough": False, "underline": False,
                             "code": False, "color": "default"},
             "plain_text": text, "href": None}]


def _fill_rich(items: Any) -> None:
    """Give request-shaped rich text (``{"text": {"content": ...}}``) its response fields."""
    for item in items or ():
        if not isinstance(item, dict):
            continue
        item.setdefault("type", "text")
        if item["type"] == "text":
            body = item.setdefault("text", {"content": ""})
            body.setdefault("link", None)
            item.setdefault("plain_text", body.get("content", ""))
            item.setdefault("href", (body.get("link") or {}).get("url"))
        else:
            item.setdefault("plain_text", "")
            item.setdefault("href", None)
        item.setdefault("annotations", {"bold": False, "italic": False, "strikethrough": False,
                                        "underline": False, "code": False, "color": "default"})


def title_of(page: dict[str, Any]) -> str:
    for prop in (page.get("properties") or {}).values():
        if isinstance(prop, dict) and prop.get("type") == "title":
            return "".join(i.get("plain_text", "") for i in prop.get("title") or ())
    if isinstance(page.get("title"), list):
        return "".join(i.get("plain_text", "") for i in page["title"])
    return ""


@dataclass
class Entity:
    """One page, block, database or data source: its dict, the list holding it, its parent's id."""

    obj: dict[str, Any]
    container: list[dict[str, Any]]
    parent_id: str | None
    kind: str  # "page" | "block" | "database" | "data_source"


@dataclass
class Index:
    entities: dict[str, Entity] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    bot: dict[str, Any] = field(default_factory=dict)
    workspace_id: str = ""
    workspace_name: str = ""

    def get(self, eid: str, kind: str | None = None) -> Entity | None:
        ent = self.entities.get(_norm(eid))
        if ent is None or (kind is not None and ent.kind != kind):
            return None
        return ent

    def pages(self) -> Iterator[dict[str, Any]]:
        return (e.obj for e in self.entities.values() if e.kind == "page")

    def data_sources(self) -> Iterator[dict[str, Any]]:
        return (e.obj for e in self.entities.values() if e.kind == "data_source")

    def page_of(self, eid: str) -> str | None:
        """The page a block (or page) belongs to."""
        cur = self.entities.get(_norm(eid))
        while cur is not None and cur.kind == "block":
            cur = self.entities.get(cur.parent_id or "")
        return cur.obj["id"] if cur is not None and cur.kind == "page" else None


def _norm(eid: str) -> str:
    """Notion accepts ids with or without dashes."""
    raw = eid.replace("-", "")
    if len(raw) == 32:
        return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    return eid


def _user_ref(user: Any, default: dict[str, Any]) -> dict[str, Any]:
    if isinstance(user, dict) and user.get("id"):
        return {"object": "user", "id": user["id"]}
    return {"object": "user", "id": default["id"]}


def build_index(ws: dict[str, Any]) -> Index:
    """Fill in every field the API would return and index every entity (iteratively)."""
    idx = Index()
    info = ws.setdefault("workspace", {})
    info.setdefault("id", "5a4b3c2d-0000-4000-8000-000000000001")
    info.setdefault("name", "Sandbox Workspace")
    idx.workspace_id, idx.workspace_name = info["id"], info["name"]
    bot = ws.setdefault("bot", {})
    bot.setdefault("object", "user")
    bot.setdefault("id", "b0b0b0b0-0000-4000-8000-000000000001")
    bot.setdefault("name", "Engram Sandbox Integration")
    bot.setdefault("avatar_url", None)
    bot.setdefault("type", "bot")
    bot.setdefault("bot", {"owner": {"type": "workspace", "workspace": True},
                           "workspace_name": idx.workspace_name, "workspace_id": idx.workspace_id})
    idx.bot = bot
    ws.setdefault("tokens", [DEFAULT_TOKEN])
    ws.setdefault("oauth_clients", [])
    ws.setdefault("users", [])
    ws.setdefault("comments", [])
    ws.setdefault("pages", [])
    ws.setdefault("databases", [])
    for u in ws["users"]:
        u.setdefault("object", "user")
        u.setdefault("id", new_id())
        u.setdefault("avatar_url", None)
        u.setdefault("type", "person")
        idx.users[u["id"]] = u
    idx.users.setdefault(bot["id"], bot)
    author = next((u for u in ws["users"] if u.get("type") == "person"), bot)

    # (object, containing list, parent id, parent kind, database id for rows)
    stack: list[tuple[dict[str, Any], list[dict[str, Any]], str | None, str | None, str | None]] = []
    for d in reversed(ws["databases"]):
        d.setdefault("object", "database")
        stack.append((d, ws["databases"], None, None, None))
    for p in reversed(ws["pages"]):
        p.setdefault("object", "page")
        stack.append((p, ws["pages"], None, None, None))
    while stack:
        obj, container, parent_id, parent_kind, db_id = stack.pop()
        if parent_kind == "database":
            obj.setdefault("object", "data_source")
        elif parent_kind == "data_source":
            obj.setdefault("object", "page")
        kind = obj.get("object") or ("page" if "properties" in obj else "block")
        if kind == "database" and "data_sources" not in obj:
            obj["data_sources"] = []
        obj["object"] = kind
        obj["id"] = _norm(obj.get("id") or new_id())
        obj["created_time"] = canon_time(obj.get("created_time") or obj.get("last_edited_time") or EPOCH)
        obj["last_edited_time"] = canon_time(obj.get("last_edited_time") or obj["created_time"])
        obj["created_by"] = _user_ref(obj.get("created_by"), author)
        obj["last_edited_by"] = _user_ref(obj.get("last_edited_by"), author)
        obj.setdefault("in_trash", bool(obj.get("archived", False)))
        if kind in ("page", "block", "database"):
            obj["parent"] = _parent(obj.get("parent"), parent_id, parent_kind, db_id)
            if kind == "database" and parent_id is None and obj["parent"].get("type") == "page_id":
                parent_id = obj["parent"]["page_id"]  # a top-level entry that names its parent page
        idx.entities[obj["id"]] = Entity(obj, container, parent_id, kind)
        if kind == "page":
            _fill_page(obj)
        elif kind == "block":
            t = obj.setdefault("type", "paragraph")
            payload = obj.setdefault(t, {})
            for key in ("rich_text", "caption"):
                if key in payload:
                    _fill_rich(payload[key])
            for cell in payload.get("cells") or ():
                _fill_rich(cell)
        elif kind == "database":
            obj.setdefault("title", [])
            _fill_rich(obj["title"])
            obj.setdefault("description", [])
            obj.setdefault("is_inline", False)
            obj.setdefault("is_locked", False)
            obj.setdefault("url", f"https://www.notion.so/{obj['id'].replace('-', '')}")
            for ds in reversed(obj["data_sources"]):
                stack.append((ds, obj["data_sources"], obj["id"], "database", obj["id"]))
            continue
        elif kind == "data_source":
            obj.setdefault("title", obj.get("title") or [])
            _fill_rich(obj["title"])
            obj.setdefault("description", [])
            obj.setdefault("properties", {"Name": {"id": "title", "name": "Name", "type": "title", "title": {}}})
            obj["parent"] = {"type": "database_id", "database_id": parent_id}
            obj.setdefault("url", f"https://www.notion.so/{obj['id'].replace('-', '')}")
            rows = obj.setdefault("rows", [])
            for row in reversed(rows):
                stack.append((row, rows, obj["id"], "data_source", db_id))
            continue
        children = obj.setdefault("children", []) if kind in ("page", "block") else []
        for child in reversed(children):
            stack.append((child, children, obj["id"], kind, None))
    for c in ws["comments"]:
        c.setdefault("object", "comment")
        c["id"] = _norm(c.get("id") or new_id())
        c.setdefault("discussion_id", new_id())
        c.setdefault("created_time", EPOCH)
        c.setdefault("last_edited_time", c["created_time"])
        c["created_by"] = _user_ref(c.get("created_by"), author)
        c.setdefault("rich_text", [])
        _fill_rich(c["rich_text"])
    return idx


def _parent(given: Any, parent_id: str | None, parent_kind: str | None, db_id: str | None) -> dict[str, Any]:
    if parent_id is None:
        return given if isinstance(given, dict) and given.get("type") else {"type": "workspace", "workspace": True}
    if parent_kind == "data_source":
        return {"type": "data_source_id", "data_source_id": parent_id, "database_id": db_id}
    if parent_kind == "database":
        return {"type": "database_id", "database_id": parent_id}
    key = "page_id" if parent_kind == "page" else "block_id"
    return {"type": key, key: parent_id}


def _fill_page(page: dict[str, Any]) -> None:
    props = page.setdefault("properties", {})
    if not any(isinstance(p, dict) and p.get("type") == "title" for p in props.values()):
        props["title"] = {"id": "title", "type": "title", "title": []}
    for name, prop in props.items():
        prop.setdefault("id", name if prop.get("type") == "title" else new_id()[:4])
        if prop.get("type") in ("title", "rich_text"):
            _fill_rich(prop.get(prop["type"]))
    page.setdefault("cover", None)
    page.setdefault("icon", None)
    page.setdefault("is_archived", False)
    page.setdefault("is_locked", False)
    page.setdefault("url", f"https://www.notion.so/{page['id'].replace('-', '')}")
    page.setdefault("public_url", None)


_PAGE_KEYS = ("object", "id", "created_time", "last_edited_time", "created_by", "last_edited_by", "cover", "icon",
              "parent", "in_trash", "is_archived", "is_locked", "properties", "url", "public_url")


def page_view(page: dict[str, Any]) -> dict[str, Any]:
    """A page object as ``GET /v1/pages/{id}`` returns it (no children; relations capped at 25)."""
    out = {k: page[k] for k in _PAGE_KEYS if k in page}
    out["archived"] = page.get("in_trash", False)  # 2025-09-03 still sends the deprecated alias
    props = {}
    for name, prop in (page.get("properties") or {}).items():
        if prop.get("type") == "relation" and len(prop.get("relation") or ()) > 25:
            prop = {**prop, "relation": prop["relation"][:25], "has_more": True}
        elif prop.get("type") == "relation":
            prop = {**prop, "has_more": False}
        props[name] = prop
    out["properties"] = props
    return out


def block_view(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """A block object as ``GET /v1/blocks/...`` returns it; a child page/database as its block."""
    common = {k: obj[k] for k in ("object", "id", "parent", "created_time", "last_edited_time", "created_by",
                                  "last_edited_by") if k in obj}
    common["object"] = "block"
    visible = [c for c in obj.get("children") or () if not c.get("in_trash")]
    if kind == "page":
        return {**common, "has_children": bool(visible), "in_trash": obj.get("in_trash", False),
                "archived": obj.get("in_trash", False), "type": "child_page", "child_page": {"title": title_of(obj)}}
    if kind == "database":
        return {**common, "has_children": False, "in_trash": obj.get("in_trash", False),
                "archived": obj.get("in_trash", False), "type": "child_database",
                "child_database": {"title": title_of(obj)}}
    t = obj["type"]
    payload = obj.get(t) or {}
    has_children = bool(visible) or (t == "synced_block" and bool((payload.get("synced_from") or {})))
    if t in ("table", "column_list", "column") and not visible:
        has_children = bool(obj.get("has_children"))
    return {**common, "has_children": has_children, "in_trash": obj.get("in_trash", False),
            "archived": obj.get("in_trash", False), "type": t, t: payload}
