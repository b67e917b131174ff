"""Rich text and property values rendered as plain text.

Pure functions over the API's JSON. Every ``plain_text`` that goes in comes out: mentions keep the
name Notion rendered for them (``@Name``, a page title, a date), links keep their target next to
their text, inline equations keep their expression. A property type this module does not know is
rendered as a typed placeholder with whatever text its value carries, never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["date_to_text", "file_to_text", "property_to_text", "rich_text", "stray_text", "user_name"]


def rich_text(items: Iterable[Mapping[str, Any]] | None) -> str:
    """Concatenate a rich-text array; a link whose target is not already its text becomes ``text (url)``."""
    out: list[str] = []
    for item in items or ():
        text = item.get("plain_text")
        if text is None:  # request-shaped items (in a sandbox workspace) may lack plain_text
            text = _content(item)
        kind = item.get("type")
        if kind == "equation":
            out.append(f"${text}$")
            continue
        href = item.get("href")
        if kind == "text" and href and href != text and not _is_notion_url(href):
            out.append(f"{text} ({href})")
        elif kind == "mention" and href and href != text and not _is_notion_url(href):
            out.append(f"{text} ({href})")
        else:
            out.append(text)
    return "".join(out)


def _content(item: Mapping[str, Any]) -> str:
    kind = item.get("type", "text")
    body = item.get(kind) or {}
    if kind == "text":
        return str(body.get("content", ""))
    if kind == "equation":
        return str(body.get("expression", ""))
    return ""


def _is_notion_url(url: str) -> bool:
    host = urlsplit(url).netloc
    return host.endswith("notion.so") or host.endswith("notion.com")


def user_name(user: Mapping[str, Any] | None, users: Mapping[str, Any] | None = None) -> str:
    """A user's display name: from the object itself, else from ``users`` (id -> user), else its id."""
    if not user:
        return ""
    name = user.get("name")
    if not name and users is not None:
        known = users.get(str(user.get("id")))
        name = getattr(known, "name", None) if not isinstance(known, Mapping) else known.get("name")
    return str(name or user.get("id") or "")


def date_to_text(date: Mapping[str, Any] | None) -> str:
    if not date:
        return ""
    text = str(date.get("start") or "")
    if date.get("end"):
        text += f" → {date['end']}"
    if date.get("time_zone"):
        text += f" ({date['time_zone']})"
    return text


def file_to_text(obj: Mapping[str, Any]) -> str:
    """A file object (files property, image/file/pdf/... block) as ``name <url>``.

    Notion-hosted file URLs are signed and expire within the hour; their query string is dropped so
    an unchanged file renders the same text on every sync.
    """
    kind = obj.get("type")
    url = ""
    if kind == "external":
        url = str((obj.get("external") or {}).get("url") or "")
    elif kind == "file":
        url = stable_file_url(str((obj.get("file") or {}).get("url") or ""))
    elif kind == "file_upload":
        url = f"file_upload:{(obj.get('file_upload') or {}).get('id', '')}"
    name = str(obj.get("name") or "")
    return " ".join(p for p in (name, f"<{url}>" if url else "") if p)


def stable_file_url(url: str) -> str:
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def property_to_text(prop: Mapping[str, Any], users: Mapping[str, Any] | None = None) -> str:
    """One page property value (``{"type": T, T: value}``) as text; empty string when it has no value."""
    kind = str(prop.get("type") or "")
    value = prop.get(kind)
    if kind in ("title", "rich_text"):
        if isinstance(value, list):
            return rich_text(value)
        return rich_text([value]) if isinstance(value, Mapping) else ""  # property_item shape
    if kind == "number":
        return _number(value)
    if kind in ("select", "status"):
        return str(value.get("name") or "") if value else ""
    if kind == "multi_select":
        return ", ".join(str(o.get("name") or "") for o in value or ())
    if kind == "date":
        return date_to_text(value)
    if kind in ("people",):
        return ", ".join(user_name(u, users) for u in value or ())
    if kind in ("created_by", "last_edited_by"):
        return user_name(value, users)
    if kind == "files":
        return ", ".join(file_to_text(f) for f in value or ())
    if kind == "checkbox":
        return "Yes" if value else "No"
    if kind in ("url", "email", "phone_number", "created_time", "last_edited_time"):
        return str(value or "")
    if kind == "formula":
        return _formula(value)
    if kind == "relation":
        ids = [str(r.get("id")) for r in (value or ()) if isinstance(r, Mapping)] if isinstance(value, list) else (
            [str(value.get("id"))] if isinstance(value, Mapping) else []
        )
        more = " …" if prop.get("has_more") else ""
        return ", ".join(ids) + more
    if kind == "rollup":
        return _rollup(value, users)
    if kind == "unique_id":
        if not value:
            return ""
        prefix = value.get("prefix")
        return f"{prefix}-{value.get('number')}" if prefix else _number(value.get("number"))
    if kind == "verification":
        if not value:
            return ""
        text = str(value.get("state") or "")
        by = value.get("verified_by")
        if by:
            text += f" by {user_name(by, users)}"
        if value.get("date"):
            text += f" ({date_to_text(value['date'])})"
        return text
    if kind == "place":
        if not value:
            return ""
        parts = [value.get("name"), value.get("address")]
        text = ", ".join(str(p) for p in parts if p)
        if not text and value.get("lat") is not None:
            text = f"{value.get('lat')}, {value.get('lon')}"
        return text
    if kind == "button":
        return ""
    # A type newer than this module: keep whatever text it carries, marked with its type.
    found = stray_text(value)
    return f"[{kind}] {found}".strip() if found else ""


def _formula(value: Mapping[str, Any] | None) -> str:
    if not value:
        return ""
    kind = value.get("type")
    inner = value.get(kind)
    if kind == "boolean":
        return "" if inner is None else ("Yes" if inner else "No")
    if kind == "number":
        return _number(inner)
    if kind == "date":
        return date_to_text(inner)
    return "" if inner is None else str(inner)


def _rollup(value: Mapping[str, Any] | None, users: Mapping[str, Any] | None) -> str:
    if not value:
        return ""
    kind = value.get("type")
    inner = value.get(kind)
    if kind == "number":
        return _number(inner)
    if kind == "date":
        return date_to_text(inner)
    if kind == "array":
        return ", ".join(t for t in (property_to_text(item, users) for item in inner or ()) if t)
    return stray_text(inner)


def stray_text(value: Any) -> str:
    """Every ``plain_text`` (or, failing that, every ``content``/``name``/``url`` string) inside a
    structure this module does not understand, joined with spaces; iterative, so depth is no limit."""
    found: list[str] = []
    stack: list[Any] = [value]
    while stack:
        cur = stack.pop()
        if isinstance(cur, Mapping):
            if isinstance(cur.get("plain_text"), str):
                found.append(cur["plain_text"])
                continue
            for key in ("content", "name", "url", "expression", "title"):
                if isinstance(cur.get(key), str) and cur[key]:
                    found.append(cur[key])
            stack.extend(reversed([v for v in cur.values() if isinstance(v, (Mapping, list))]))
        elif isinstance(cur, list):
            stack.extend(reversed(cur))
    return " ".join(found)
