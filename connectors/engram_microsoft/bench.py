"""``engram bench microsoft``: a full and an incremental sync against the sandbox, counted.

The generated workspace mixes every resource: channel threads (with replies), drive files
(txt/md/html, each downloaded through Graph's 302), OneNote pages and SharePoint site pages.
Reported next to each other:

- ``items_per_s``: records produced per second of the full sync, wall clock, through real TLS,
  MSAL and httpx (Graph's own rate limits are lifted here: at 1 request/s per channel the number
  would measure Microsoft's limits, not this code; ``rates`` puts them back);
- ``requests_per_item`` and ``min_requests_per_item``: HTTP requests the full sync sent per
  record, and the fewest Graph needs for the same workspace (delta pages of 50 messages, a
  list page per 100 notes or 20 site pages, one content fetch per note and site page, two
  per downloaded file, the listings of containers, one token);
- ``incremental_request_fraction``: requests of the next incremental sync, after changing
  ``edit_fraction`` of the items, divided by the full sync's.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from engram_sdk.connectors import AuthorizationPending, SystemClock, serve
from engram_sdk.testing import Harness

from ._connector import MicrosoftConnector
from .sandbox import MicrosoftSandbox

__all__ = ["bench_workspace", "run_bench"]

_UNLIMITED = {k: "100000/s" for k in ("channel", "team", "onenote", "drive", "site", "default")}
_WORDS = ("launch budget review client draft policy renewal vendor contract onboarding quarter deadline "
          "approval migration incident retro roadmap hiring audit filing").split()


def _text(i: int, n: int = 40) -> str:
    return " ".join(_WORDS[(i * 7 + k * 3) % len(_WORDS)] for k in range(n))


def bench_workspace(items: int) -> dict[str, Any]:
    """About ``items`` records: 40% threads, 30% files, 15% notes, 15% site pages."""
    threads, files = int(items * 0.4), int(items * 0.3)
    notes, site_pages = int(items * 0.15), items - int(items * 0.4) - int(items * 0.3) - int(items * 0.15)
    channels = [{"id": f"19:bench{c}@thread.tacv2", "displayName": f"Channel {c}", "messages": []} for c in range(4)]
    for i in range(threads):
        ts = f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}.000Z"
        msg = {"id": str(1_700_000_000_000 + i), "createdDateTime": ts,
               "from": {"user": {"id": "u-1", "displayName": "Ann"}},
               "body": {"contentType": "html", "content": f"<p>{_text(i)}</p>"},
               "replies": [{"id": str(1_800_000_000_000 + i * 10 + r), "createdDateTime": ts,
                            "from": {"user": {"id": "u-2", "displayName": "Bob"}},
                            "body": {"contentType": "text", "content": _text(i + r, 12)}} for r in range(i % 4)]}
        channels[i % 4]["messages"].append(msg)
    exts = [("txt", "text/plain"), ("md", "text/markdown"), ("html", "text/html")]
    drive_items = []
    for i in range(files):
        ext, mime = exts[i % 3]
        body = _text(i, 80) if ext != "html" else f"<h1>File {i}</h1><p>{_text(i, 80)}</p>"
        drive_items.append({"id": f"F{i:05d}", "name": f"file-{i}.{ext}", "file": {"mimeType": mime}, "content": body})
    sections = [{"id": f"sec-{s}", "displayName": f"Section {s}", "pages": []} for s in range(3)]
    for i in range(notes):
        sections[i % 3]["pages"].append({"id": f"pg-{i}", "title": f"Note {i}",
                                         "content": f"<html><body><p>{_text(i, 60)}</p></body></html>"})
    pages = [{"id": f"sp-{i:05d}", "name": f"Page{i}.aspx", "title": f"Page {i}", "webUrl": f"https://x/SitePages/{i}",
              "canvasLayout": {"horizontalSections": [{"id": "1", "columns": [{"id": "1", "webparts": [
                  {"@odata.type": "#microsoft.graph.textWebPart", "id": "w", "innerHtml": f"<p>{_text(i, 60)}</p>"}]}]}]}}
             for i in range(site_pages)]
    return {
        "tenant": "bench-tenant",
        "apps": [{"client_id": "bench-app", "client_secret": "bench-secret"}],
        "users": [{"id": "u-1", "displayName": "Ann", "userPrincipalName": "ann@bench.example"}],
        "teams": [{"id": "bench-team", "displayName": "Bench", "channels": channels}],
        "notebooks": [{"id": "bench-nb", "displayName": "Notes", "sections": sections}],
        "sites": [{"id": "bench-site", "displayName": "Intranet", "pages": pages}],
        "drives": [{"id": "bench-drive", "name": "Docs", "items": drive_items}],
    }


def _minimum(ws: dict[str, Any]) -> int:
    """The fewest Graph requests a full sync of ``ws`` needs (see the module docstring)."""
    n = 1  # one app-only token (the delegated one comes from the device-code login)
    for team in ws["teams"]:
        n += 2  # the team, its channels
        for ch in team["channels"]:
            n += max(1, math.ceil(len(ch["messages"]) / 50))
            n += sum(math.ceil(max(0, len(m.get("replies", [])) - 1000) / 50) for m in ch["messages"])
    for drive in ws["drives"]:
        n += max(1, math.ceil(len(drive["items"]) / 200)) + 2 * sum(1 for i in drive["items"] if "file" in i)
    for nb in ws["notebooks"]:
        n += 2 + sum(max(1, math.ceil(len(s["pages"]) / 100)) + len(s["pages"]) for s in nb["sections"])
    for site in ws["sites"]:
        n += 1 + max(1, math.ceil(len(site["pages"]) / 100)) + len(site["pages"])
    return n


def run_bench(items: int = 2000, edit_fraction: float = 0.01, *, rates: dict[str, str] | None = None) -> dict[str, Any]:
    ws = bench_workspace(items)
    with tempfile.TemporaryDirectory(prefix="engram-bench-ms-") as tmp:
        root = Path(tmp)
        # The real clock: with ``rates`` given, the client-side limiter's waits are part of the figure.
        harness = Harness(root, team="bench", clock=SystemClock(), connector_cls=MicrosoftConnector)
        sandbox = MicrosoftSandbox(ws)
        try:
            with serve(sandbox, tls=True, tls_dir=root / "tls") as server:
                config = {"tenant": "bench-tenant", "client_id": "bench-app", "client_secret": "bench-secret",
                          "delegated": True, "authority": f"{server.url}/bench-tenant",
                          "graph_url": f"{server.url}/v1.0", "ca_bundle": server.ca_bundle,
                          "rate_limits": rates if rates is not None else _UNLIMITED}
                name, scope = "bench-ms", "team:bench-team,drive:bench-drive,site:bench-site,notebook:bench-nb"
                for _ in range(2):  # start the device-code login, approve it, finish it
                    try:
                        harness.connect("microsoft", name, scope=scope, config=config)
                        break
                    except AuthorizationPending:
                        sandbox.op_approve_device({"user_code": "*", "user": "u-1"})
                else:
                    raise RuntimeError("the device-code login did not finish")
                runner = harness.runner()

                server.admin.reset_stats()
                t0 = time.perf_counter()
                full = runner.run(name)
                seconds = time.perf_counter() - t0
                full_requests = server.admin.stats()["requests"]
                if not full.ok:
                    raise RuntimeError(f"full sync failed: {full.error}")

                changed = _edit(sandbox, ws, edit_fraction)
                server.admin.reset_stats()
                incr = runner.run(name)
                incr_requests = server.admin.stats()["requests"]
                if not incr.ok:
                    raise RuntimeError(f"incremental sync failed: {incr.error}")
        finally:
            harness.close()
    minimum = _minimum(ws)
    return {
        "items": full.records,
        "seconds": round(seconds, 3),
        "items_per_s": round(full.records / seconds, 1),
        "requests": full_requests,
        "requests_per_item": round(full_requests / full.records, 4),
        "min_requests": minimum,
        "min_requests_per_item": round(minimum / full.records, 4),
        "changed_items": changed,
        "incremental_records": incr.records,
        "incremental_requests": incr_requests,
        "incremental_request_fraction": round(incr_requests / full_requests, 4),
        "graph_rate_limits": "lifted" if rates is None else rates,
    }


def _edit(sandbox: MicrosoftSandbox, ws: dict[str, Any], fraction: float) -> int:
    """Change ``fraction`` of every kind of item through the sandbox's own edit operations."""
    changed = 0
    with sandbox.lock:
        for ch in ws["teams"][0]["channels"]:
            for m in ch["messages"][: max(1, round(len(ch["messages"]) * fraction))]:
                sandbox.op_edit_message({"team": "bench-team", "channel": ch["id"], "id": m["id"], "text": "edited"})
                changed += 1
        files = ws["drives"][0]["items"]
        for item in files[: max(1, round(len(files) * fraction))]:
            sandbox.op_put_file({"drive": "bench-drive", "id": item["id"], "content": "edited file"})
            changed += 1
        for sec in ws["notebooks"][0]["sections"]:
            for page in sec["pages"][: max(1, round(len(sec["pages"]) * fraction))]:
                sandbox.op_edit_page({"id": page["id"], "html": "<p>edited</p>"})
                changed += 1
        pages = ws["sites"][0]["pages"]
        for page in pages[: max(1, round(len(pages) * fraction))]:
            sandbox.op_edit_site_page({"site": "bench-site", "id": page["id"], "html": "<p>edited</p>"})
            changed += 1
    return changed
