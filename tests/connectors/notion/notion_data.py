"""Shared test data: the recorded fixtures (``load``) and builders of sandbox workspaces."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

# A copy of ../shared/fixtures ships in tests/fixtures so a clean clone tests alone; ENGRAM_SHARED
# points at another shared/ folder (e.g. newer recordings).
_SHARED = os.environ.get("ENGRAM_SHARED")
FIXTURES = (Path(_SHARED) if _SHARED else Path(__file__).resolve().parents[2]) / "fixtures" / "notion" / "real"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))




# --- sandbox workspaces ----------------------------------------------------------------------------

BASE = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
TOKEN = "secret_sandbox"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def pid(i: int, prefix: str = "a") -> str:
    """A stable, valid page id for page ``i``."""
    return str(uuid.UUID(int=(int(prefix, 16) << 120) + i))


def para(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": text}}]}, **extra}


def page(i: int, title: str, children: list[Any] | None = None, *, minutes_ago: int | None = None,
         prefix: str = "a", **extra: Any) -> dict[str, Any]:
    when = BASE - timedelta(minutes=(minutes_ago if minutes_ago is not None else 60 * (i + 1)))
    return {"object": "page", "id": pid(i, prefix), "created_time": iso(when), "last_edited_time": iso(when),
            "properties": {"title": {"type": "title", "title": [{"text": {"content": title}}]}},
            "children": children if children is not None else [para(f"Body of {title}: fact {i}.")], **extra}


def flat_workspace(n: int, **kw: Any) -> dict[str, Any]:
    """``n`` top-level pages, each with one paragraph, last edited one hour apart."""
    return {"users": [{"id": "00000000-0000-4000-8000-0000000000fa", "name": "Example Person", "type": "person",
                       "person": {"email": "person@example.com"}}],
            "pages": [page(i, f"Page {i}") for i in range(n)], **kw}


def deep_page(blocks: int = 1000, depth: int = 5, top: int = 3, fanout: int = 5) -> list[dict[str, Any]]:
    """``blocks`` toggles in a tree ``depth`` levels deep (``top`` roots, ``fanout`` children each),
    filled breadth-first; every block's text names it (``block N``)."""
    roots: list[dict[str, Any]] = []
    made = 0
    queue: list[tuple[dict[str, Any], int]] = [({"children": roots}, 0)]
    while queue and made < blocks:
        holder, d = queue.pop(0)
        for _ in range(top if d == 0 else fanout):
            if made >= blocks or d >= depth:
                break
            node = {"type": "toggle", "toggle": {"rich_text": [{"text": {"content": f"block {made} at depth {d + 1}"}}]},
                    "children": []}
            made += 1
            holder["children"].append(node)
            queue.append((node, d + 1))
    return roots
