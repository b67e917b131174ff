"""Paths and constants shared by the Microsoft connector tests."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
# A copy of ../shared/fixtures ships in tests/fixtures; ENGRAM_SHARED points at another shared/ folder.
FIXTURES = Path(os.environ.get("ENGRAM_SHARED") or REPO / "tests") / "fixtures" / "microsoft" / "real"
TENANT = "2432b57b-0abd-43db-aa7b-16eadd115d34"
OBSERVED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def load(name: str) -> Any:
    path = FIXTURES / name
    if name.endswith(".json"):
        return json.loads(path.read_text())
    return path.read_text()


# --- a sandbox workspace ---------------------------------------------------------------------

APP = {"client_id": "app-1", "client_secret": "secret-1"}
SANDBOX_TENANT = "tenant-1"
TEAM = "team-1"
GENERAL = "19:general@thread.tacv2"
RANDOM = "19:random@thread.tacv2"
OTHER_TEAM = "team-2"
DRIVE = "drive-1"
SITE = "site-1"
NOTEBOOK = "nb-1"
SECTION = "sec-1"
NAME = "acme-ms"  # the connection the tests make
SCOPE = "team:team-1,drive:drive-1,site:site-1,notebook:nb-1"
BIG_THREAD = "1700000000000"  # root of the thread with 1,050 replies
GENERAL_MESSAGES = 120  # three delta pages of 50
BIG_REPLIES = 1050


def _ts(i: int) -> str:
    return datetime.fromtimestamp(1_700_000_000 + i * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _user(uid: str) -> dict[str, Any]:
    names = {"u-ann": "Ann Lee", "u-bob": "Bob Stone"}
    return {"user": {"id": uid, "displayName": names[uid], "userIdentityType": "aadUser"}}


def _message(mid: str, text: str, i: int, user: str = "u-ann", **extra: Any) -> dict[str, Any]:
    return {"id": mid, "from": _user(user), "createdDateTime": _ts(i),
            "body": {"contentType": "text", "content": text}, **extra}


def workspace() -> dict[str, Any]:
    from msft_files import make_docx, make_pdf

    import base64

    general = []
    for i in range(GENERAL_MESSAGES):
        mid = str(1_700_000_000_000 + i)
        general.append(_message(mid, f"general message {i}", i, "u-ann" if i % 2 else "u-bob"))
    general[0]["replies"] = [
        _message(str(1_800_000_000_000 + j), f"reply {j}", 200 + j, "u-bob", replyToId=BIG_THREAD)
        for j in range(BIG_REPLIES)
    ]
    general[1]["body"] = {"contentType": "html", "content": 'Ask <at id="0">Bob Stone</at> about the <b>Q3 plan</b>'}
    general[1]["mentions"] = [{"id": 0, "mentionText": "Bob Stone", "mentioned": _user("u-bob")}]
    general[2] = {"id": general[2]["id"], "messageType": "systemEventMessage", "createdDateTime": _ts(2),
                  "body": {"contentType": "html", "content": "<systemEventMessage/>"}, "from": None}
    random = [_message("1600000000001", "lunch?", 1, replies=[_message("1600000000002", "yes", 2, "u-bob")]),
              _message("1600000000003", "coffee", 3)]
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    items = [
        {"id": "root", "name": "root", "root": {}, "folder": {"childCount": 7}},
        {"id": "F1", "name": "Plans", "folder": {"childCount": 6}, "parentReference": {"id": "root", "path": "/drives/drive-1/root:"}},
        {"id": "T1", "name": "notes.txt", "file": {"mimeType": "text/plain"}, "content": "Launch is on May 4.",
         "parentReference": {"id": "F1", "path": "/drives/drive-1/root:/Plans"}},
        {"id": "M1", "name": "readme.md", "file": {"mimeType": "text/markdown"}, "content": "# Readme\nUse the VPN."},
        {"id": "H1", "name": "page.html", "file": {"mimeType": "text/html"}, "content": "<p>Office moves to <b>Pier 9</b></p>"},
        {"id": "D1", "name": "budget.docx", "file": {"mimeType": docx},
         "content_base64": base64.b64encode(make_docx(["Budget 2026", "Travel capped at 3 trips"])).decode()},
        {"id": "P1", "name": "memo.pdf", "file": {"mimeType": "application/pdf"},
         "content_base64": base64.b64encode(make_pdf(["Memo: hiring freeze until June"])).decode()},
        {"id": "X1", "name": "numbers.xlsx", "file": {"mimeType": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
         "content_base64": base64.b64encode(b"PK\x03\x04 not really").decode()},
        {"id": "BAD", "name": "broken.docx", "file": {"mimeType": docx}, "content_base64": base64.b64encode(b"not a zip").decode()},
    ]
    canvas = load("sharepoint_site_page_expand_canvaslayout.json")
    listed = load("sharepoint_site_pages_list.json")["value"]
    site_pages = [dict(canvas, createdDateTime="2023-04-01T00:00:00Z")] + [
        {k: v for k, v in p.items() if not k.startswith("@")} for p in listed]
    onenote_html = load("onenote_page_content_output.html")
    pages = [
        {"id": "pg-1", "title": "Moon landing", "lastModifiedDateTime": "2024-01-01T00:00:00Z", "content": onenote_html},
        {"id": "pg-2", "title": "Standup", "lastModifiedDateTime": "2024-01-02T00:00:00Z",
         "content": "<html><body><p>Standup moved to 9:30</p></body></html>"},
        {"id": "pg-3", "title": "Retro", "lastModifiedDateTime": "2024-01-03T00:00:00Z",
         "content": "<html><body><ul><li>Ship smaller</li></ul></body></html>"},
    ]
    return {
        "tenant": SANDBOX_TENANT,
        "apps": [APP],
        "users": [{"id": "u-ann", "displayName": "Ann Lee", "userPrincipalName": "ann@contoso.example"},
                  {"id": "u-bob", "displayName": "Bob Stone", "userPrincipalName": "bob@contoso.example"}],
        "teams": [
            {"id": TEAM, "displayName": "Contoso", "channels": [
                {"id": GENERAL, "displayName": "General", "messages": general},
                {"id": RANDOM, "displayName": "Random", "messages": random}]},
            {"id": OTHER_TEAM, "displayName": "Other", "channels": [
                {"id": "19:other@thread.tacv2", "displayName": "Other", "messages": [_message("1500000000001", "secret", 1)]}]},
        ],
        "notebooks": [{"id": NOTEBOOK, "displayName": "Team notes", "sections": [
            {"id": SECTION, "displayName": "Meetings", "pages": pages}]}],
        "sites": [{"id": SITE, "displayName": "Intranet", "pages": site_pages}],
        "drives": [{"id": DRIVE, "name": "Documents", "items": items}],
    }


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
