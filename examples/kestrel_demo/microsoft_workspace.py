"""The Kestrel team (``records.jsonl``) as a Microsoft sandbox workspace.

The records stay the one source: a OneNote ``Document`` (``doc_type`` ``note``, path *notebook /
section*) becomes a OneNote page whose HTML is its text (paragraphs and a bulleted list), a
SharePoint ``site_page`` (path *site / ...*) a modern site page with one text web part, and a
Teams ``channel_thread`` (path *team / channel*) a channel message with its replies. The tenant
has one app registration (client credentials) and the team's people as users; OneNote needs a
delegated sign-in (device code), which the sandbox's identity provider approves for ``KESTREL_USER``.
"""

from __future__ import annotations

import html
import uuid
from typing import Any

from engram_sdk import Document, Thread

from .records import all_messages, load_records, text_blocks

__all__ = ["KESTREL_APP", "KESTREL_USER", "kestrel_scope", "kestrel_workspace"]

KESTREL_APP = {"client_id": "kestrel-demo-app", "client_secret": "kestrel-demo-secret"}  # sandbox-only credentials
KESTREL_USER = "u-odalys"  # who approves the device-code sign-in
_NS = uuid.UUID("0c3e8f4e-1d9a-4b1f-8a57-2c1f4e6d9b21")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _html(text: str) -> str:
    out, items = [], []
    for kind, body in text_blocks(text):
        if kind == "bullet":
            items.append(f"<li>{html.escape(body)}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        out.append(f"<p>{html.escape(body)}</p>")
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    return "".join(out)


def _ts(dt: Any) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _from(p: Any) -> dict[str, Any] | None:
    return {"user": {"id": p.id, "displayName": p.name or p.id, "userIdentityType": "aadUser"}} if p else None


def kestrel_scope(records: list[Any] | None = None) -> str:
    """``--scope`` for the team: its Teams team, its notebook and its site."""
    ws = kestrel_workspace(records)
    items = [f"team:{t['id']}" for t in ws["teams"]] + [f"notebook:{n['id']}" for n in ws["notebooks"]]
    return ",".join(items + [f"site:{s['id']}" for s in ws["sites"]])


def kestrel_workspace(records: list[Any] | None = None) -> dict[str, Any]:
    """The Microsoft sandbox workspace of the sample team (see the module docstring)."""
    records = [r for r in (records if records is not None else load_records()) if r.platform == "microsoft"]
    users: dict[str, dict[str, Any]] = {}
    teams: dict[str, dict[str, Any]] = {}
    notebooks: dict[str, dict[str, Any]] = {}
    sites: dict[str, dict[str, Any]] = {}
    for r in records:
        for p in r.authors:
            users.setdefault(p.id, {"id": p.id, "displayName": p.name or p.id,
                                    "userPrincipalName": p.email or f"{p.id}@example.invalid"})
        path = list(r.path) + ["General", "General"]
        if isinstance(r, Thread):
            team = teams.setdefault(path[0], {"id": _id("team", path[0]), "displayName": path[0], "channels": []})
            channel = next((c for c in team["channels"] if c["displayName"] == path[1]), None)
            if channel is None:
                channel = {"id": f"19:{_id('channel', path[0], path[1]).replace('-', '')}@thread.tacv2",
                           "displayName": path[1], "messages": []}
                team["channels"].append(channel)
            for root in r.messages:
                msg_id = str(int(root.created_at.timestamp() * 1000))
                replies = []
                for k, reply in enumerate(all_messages(root.replies)):
                    replies.append({"id": str(int(reply.created_at.timestamp() * 1000) + k), "replyToId": msg_id,
                                    "createdDateTime": _ts(reply.created_at), "from": _from(reply.author),
                                    "body": {"contentType": "text", "content": reply.text}})
                    if reply.author:
                        users.setdefault(reply.author.id, {"id": reply.author.id,
                                                           "displayName": reply.author.name or reply.author.id,
                                                           "userPrincipalName": reply.author.email or ""})
                channel["messages"].append({"id": msg_id, "createdDateTime": _ts(root.created_at),
                                            "subject": r.title, "from": _from(root.author),
                                            "body": {"contentType": "text", "content": root.text},
                                            "replies": replies})
        elif isinstance(r, Document) and r.doc_type == "site_page":
            site = sites.setdefault(path[0], {"id": _id("site", path[0]), "displayName": path[0], "pages": []})
            site["pages"].append({
                "id": _id("sitepage", r.entity_id), "name": r.title.replace(" ", "-") + ".aspx", "title": r.title,
                "webUrl": f"https://fennwick.example/sites/kestrel/SitePages/{r.title.replace(' ', '-')}.aspx",
                "createdDateTime": _ts(r.created_at or r.updated_at), "lastModifiedDateTime": _ts(r.updated_at),
                "canvasLayout": {"horizontalSections": [{"id": "1", "columns": [{"id": "1", "webparts": [
                    {"@odata.type": "#microsoft.graph.textWebPart", "id": _id("webpart", r.entity_id),
                     "innerHtml": _html(r.text)}]}]}]}})
        elif isinstance(r, Document):
            nb = notebooks.setdefault(path[0], {"id": _id("notebook", path[0]), "displayName": path[0], "sections": []})
            section = next((s for s in nb["sections"] if s["displayName"] == path[1]), None)
            if section is None:
                section = {"id": _id("section", path[0], path[1]), "displayName": path[1], "pages": []}
                nb["sections"].append(section)
            section["pages"].append({
                "id": _id("note", r.entity_id), "title": r.title, "createdDateTime": _ts(r.created_at or r.updated_at),
                "lastModifiedDateTime": _ts(r.updated_at),
                "content": (f"<html><head><title>{html.escape(r.title)}</title></head>"
                            f"<body>{_html(r.text)}</body></html>")})
    users.setdefault(KESTREL_USER, {"id": KESTREL_USER, "displayName": KESTREL_USER,
                                    "userPrincipalName": f"{KESTREL_USER}@example.invalid"})
    tenant = records[0].workspace_id if records else "tenant-kestrel"
    return {"tenant": tenant, "apps": [dict(KESTREL_APP)], "users": list(users.values()),
            "teams": list(teams.values()), "notebooks": list(notebooks.values()), "sites": list(sites.values()),
            "drives": []}

