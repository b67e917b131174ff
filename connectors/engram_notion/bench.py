"""``engram bench notion``: a full and an incremental sync of a generated workspace in the sandbox.

Measures, through the real path (sandbox on loopback -> notion-client -> connector -> sync runner ->
signed events in a scratch SQLite store):

- ``pages_per_s``: pages synced per wall-clock second with the client-side limiter's waits taken
  on an injected clock (so the figure is the SDK's own speed; ``limited_pages_per_s`` is what
  Notion's 3 requests/s average allows at the measured requests per page);
- ``requests_per_page`` against ``min_requests_per_page``, the fewest calls the API allows for
  these pages: a share of one search call per 100 pages, one block-children call per 100 blocks
  of each block that has children (the page included), one comments call, and one search of the
  trash per run;
- ``incremental_request_fraction``: requests of an incremental sync after editing ``edit_fraction``
  of the pages, over the requests of the full sync (the issue's bar: at most 0.05 for 1% of 2,000).
"""

from __future__ import annotations

import math
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["bench_workspace", "run_bench"]

_BASE = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _text(s: str) -> list[dict[str, Any]]:
    return [{"text": {"content": s}}]


def bench_workspace(pages: int, blocks_per_page: int = 6) -> dict[str, Any]:
    """``pages`` pages edited one minute apart, each with paragraphs and one toggle holding two."""
    out = []
    for i in range(pages):
        when = _iso(_BASE - timedelta(minutes=i + 1))
        children: list[dict[str, Any]] = [
            {"type": "paragraph", "paragraph": {"rich_text": _text(f"Page {i}, paragraph {j}: decision {i * j}.")}}
            for j in range(max(0, blocks_per_page - 1))
        ]
        children.append({"type": "toggle", "toggle": {"rich_text": _text(f"Details of page {i}")}, "children": [
            {"type": "bulleted_list_item", "bulleted_list_item": {"rich_text": _text(f"owner {i % 17}")}},
            {"type": "to_do", "to_do": {"rich_text": _text("follow up"), "checked": bool(i % 2)}},
        ]})
        out.append({"object": "page", "id": str(uuid.UUID(int=(0xB << 120) + i)), "created_time": when,
                    "last_edited_time": when,
                    "properties": {"title": {"type": "title", "title": _text(f"Bench page {i}")}},
                    "children": children})
    return {"pages": out}


def _min_requests(ws: dict[str, Any]) -> int:
    total = math.ceil(len(ws["pages"]) / 100) + 1  # search, and one search of the (empty) trash
    for page in ws["pages"]:
        stack = [page]
        while stack:
            node = stack.pop()
            kids = node.get("children") or []
            if node is page or kids:
                total += max(1, math.ceil(len(kids) / 100))
            stack.extend(k for k in kids if k.get("object") != "page")
        total += 1  # comments
    return total


def run_bench(pages: int = 2000, edit_fraction: float = 0.01) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring)."""
    from engram_sdk.connectors import FakeClock, serve
    from engram_sdk.testing import Harness

    from ._connector import NotionConnector
    from .sandbox import NotionSandbox

    ws = bench_workspace(pages)
    minimum = _min_requests(ws)
    clock = FakeClock()
    sandbox = NotionSandbox(ws, clock=clock)
    with tempfile.TemporaryDirectory(prefix="engram-bench-notion-") as tmp, serve(sandbox) as server:
        harness = Harness(tmp, team="bench", clock=clock, connector_cls=NotionConnector)
        try:
            harness.connect("notion", "bench-notion", scope="all",
                            config={"token": "secret_sandbox", "base_url": server.url})
            runner = harness.runner(batch_size=500)

            server.admin.reset_stats()
            started = time.perf_counter()
            full = runner.run("bench-notion")
            seconds = time.perf_counter() - started
            full_requests = server.admin.stats()["requests"]
            if not full.ok:
                raise RuntimeError(f"the full sync failed: {full.error}")

            edits = max(1, round(pages * edit_fraction))
            server.admin.op("set_time", time=_iso(_BASE + timedelta(hours=1)))
            step = max(1, pages // edits)
            for i in range(0, step * edits, step):
                server.admin.op("edit_page", id=str(uuid.UUID(int=(0xB << 120) + i)), append=f"edit of page {i}")
            server.admin.reset_stats()
            inc_started = time.perf_counter()
            incremental = runner.run("bench-notion")
            inc_seconds = time.perf_counter() - inc_started
            inc_requests = server.admin.stats()["requests"]
            if not incremental.ok:
                raise RuntimeError(f"the incremental sync failed: {incremental.error}")
        finally:
            harness.close()
    per_page = full_requests / pages
    return {
        "pages": pages,
        "pages_per_s": round(pages / seconds, 1),
        "seconds": round(seconds, 2),
        "requests": full_requests,
        "requests_per_page": round(per_page, 3),
        "min_requests_per_page": round(minimum / pages, 3),
        "limited_pages_per_s": round(3.0 / per_page, 2),
        "events_stored": full.stored,
        "edited_pages": edits,
        "incremental_requests": inc_requests,
        "incremental_seconds": round(inc_seconds, 2),
        "incremental_edits_recorded": incremental.stored,
        "incremental_request_fraction": round(inc_requests / full_requests, 4),
    }
