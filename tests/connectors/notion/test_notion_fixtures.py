"""Every recorded Notion fixture normalises without error and without silent text loss.

For each file in shared/fixtures/notion/real the test collects every ``plain_text`` (and the other
strings that carry content: child page titles, equation expressions, option names, urls, emails,
phone numbers) going in, normalises the file the way the connector would, and checks each string
comes out in the produced records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pytest

from engram_notion._blocks import render_blocks
from engram_notion._normalize import (
    comments_to_threads,
    data_source_to_document,
    database_to_document,
    is_trashed,
    page_to_document,
    person,
    tombstone,
)
from engram_notion._text import property_to_text
from engram_notion._webhook import is_verification_request, parse_delivery
from engram_sdk._records import Document, Thread, Tombstone
from notion_client.errors import build_request_error

from notion_data import FIXTURES, load

WS = "ws-test"
ALL = sorted(p.name for p in FIXTURES.glob("*.json"))


def test_the_fixture_set_is_there():
    assert len(ALL) >= 90, f"expected the recorded Notion fixtures under {FIXTURES}"


def _strings_in(obj: Any) -> list[str]:
    """Content-bearing strings of a Notion JSON value (iterative walk)."""
    found: list[str] = []
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, list):
            stack.extend(cur)
            continue
        if not isinstance(cur, Mapping):
            continue
        if isinstance(cur.get("plain_text"), str):
            found.append(cur["plain_text"])
        kind = cur.get("type")
        if kind in ("child_page", "child_database") and isinstance(cur.get(kind), Mapping):
            found.append(cur[kind].get("title", ""))
        if kind == "equation" and isinstance(cur.get("equation"), Mapping):
            found.append(cur["equation"].get("expression", ""))
        if kind in ("select", "status") and isinstance(cur.get(kind), Mapping) and cur.get("object") != "database":
            if "name" in cur[kind] and "options" not in cur[kind]:
                found.append(cur[kind]["name"])
        if kind in ("url", "email", "phone_number") and isinstance(cur.get(kind), str):
            found.append(cur[kind])
        if kind == "formula" and isinstance(cur.get("formula"), Mapping):
            f = cur["formula"]
            if f.get("type") == "string" and f.get("string"):
                found.append(f["string"])
        stack.extend(v for v in cur.values() if isinstance(v, (Mapping, list)))
    # Line by line: a multi-line list item or quote comes out with its continuation lines indented.
    return [line for f in found for line in (part.strip() for part in f.split("\n")) if line]


def _record_text(rec: Any) -> str:
    if isinstance(rec, Document):
        return "\n".join([rec.title, rec.text, *rec.properties.values()])
    if isinstance(rec, Thread):
        out = [rec.title]
        stack = list(rec.messages)
        while stack:
            m = stack.pop()
            out.append(m.text)
            stack.extend(m.replies)
        return "\n".join(out)
    return ""


def _normalise(obj: Mapping[str, Any]) -> str:
    """Normalise any recorded response the way the connector treats that kind of object."""
    kind = obj.get("object")
    if kind == "list":
        results = obj.get("results") or []
        blocks = [r for r in results if r.get("object") == "block"]
        comments = [r for r in results if r.get("object") == "comment"]
        others = [r for r in results if r.get("object") not in ("block", "comment")]
        out = [render_blocks(blocks)] if blocks else []
        if comments:
            out += [_record_text(t) for t in comments_to_threads(comments, workspace_id=WS)]
        out += [_normalise(r) for r in others]
        return "\n".join(out)
    if kind == "page":
        rec = tombstone(obj, workspace_id=WS, reason="trashed") if is_trashed(obj) else page_to_document(
            obj, workspace_id=WS)
        # A trashed page still has its last text (a tombstone carries none): normalise it as a page too.
        return _record_text(page_to_document(obj, workspace_id=WS)) + _record_text(rec)
    if kind == "block":
        return render_blocks([obj])
    if kind == "comment":
        return "\n".join(_record_text(t) for t in comments_to_threads([obj], workspace_id=WS))
    if kind == "data_source":
        return _record_text(data_source_to_document(obj, workspace_id=WS))
    if kind == "database":
        return _record_text(database_to_document(obj, workspace_id=WS))
    if kind == "user":
        p = person(obj)
        return p.name or "" if p else ""
    if kind == "property_item":
        return property_to_text(obj)
    if kind == "page_markdown":
        return obj.get("markdown", "")
    if kind == "error":
        # The error body maps onto notion-client's error types, code and message intact.
        import httpx

        resp = httpx.Response(obj["status"], json=obj, request=httpx.Request("GET", "https://api.notion.com/v1/x"))
        err = build_request_error(resp, resp.text)
        assert err.code == obj["code"] or err.code == "notionhq_client_response_error"
        return str(err)
    raise AssertionError(f"unhandled object kind {kind!r}")


@pytest.mark.parametrize("name", [n for n in ALL if not n.startswith("webhook_")])
def test_api_fixture_normalises_without_text_loss(name):
    obj = load(name)
    out = _normalise(obj)
    missing = [s for s in _strings_in(obj) if s not in out]
    assert not missing, f"{name}: text lost: {missing[:5]}"


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("webhook_")])
def test_webhook_fixture_parses(name):
    payload = load(name)
    if is_verification_request(payload):
        assert payload["verification_token"]
        return
    delivery = parse_delivery(json.dumps(payload).encode())
    assert delivery.entity_id == payload["entity"]["id"]
    assert delivery.targets, "every delivery names something to refetch"
    assert delivery.timestamp is not None and delivery.timestamp.tzinfo is not None


def test_trashed_page_fixture_becomes_trashed_tombstone():
    obj = load("uno_page_trashed.json")
    rec = tombstone(obj, workspace_id=WS, reason="trashed")
    assert isinstance(rec, Tombstone) and rec.reason == "trashed" and rec.entity_id == obj["id"]


def test_legacy_archived_page_counts_as_trashed():
    obj = load("block_child_page_trashed_via_delete.json")  # in_trash + archived
    assert is_trashed(obj)
    assert is_trashed({"archived": True}) and not is_trashed({"archived": False, "in_trash": False})


def test_bare_id_tombstone_needs_a_time():
    with pytest.raises(ValueError):
        tombstone("abc", workspace_id=WS)
    rec = tombstone("abc", workspace_id=WS, reason="deleted", updated_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert rec.reason == "deleted"
