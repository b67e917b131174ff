"""The Kestrel team (``records.jsonl``) as a Harvey sandbox workspace.

The records stay the one source: the review-table ``row`` documents (path *project / table*)
become one Vault project with a file per contract and a review table whose row for that file
holds one cell per property. The cells are *verified* by the reviewer, which is what makes the
connector report them (Harvey's API gives no change feed of unverified AI cells; a verified or
edited cell becomes an ``Edit``). The cells' ``column_question`` names the contract, so the
trainer's fact reads "the Notice period of Nimbusfold Hosting Contract". A ``query`` thread
becomes a v2 query-history event (question and Harvey's answer) in the same project, dated
``days_ago`` before now so it falls inside the connector's look-back window. ``kestrel_edits``
gives the ``edit_cell`` operations that make the sample's cell edits.

``rate_limits`` are demo-sized (per minute): the code path (429 without ``Retry-After``, the
connector's waits) is the same as with Harvey's documented limits.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from engram_harvey._assumptions import PERMISSIONS  # no public name: what each stream needs
from engram_sdk import Document, Edit, Thread

from .records import load_records

__all__ = ["DEMO_RATE_LIMITS", "KESTREL_TOKEN", "kestrel_edits", "kestrel_scope", "kestrel_workspace"]

KESTREL_TOKEN = "harvey-kestrel-demo-token"  # the API token the workspace accepts
DEMO_RATE_LIMITS = {"completion": 600, "vault": 600, "audit": 600, "history": 600, "client_matters": 600}
_NS = uuid.UUID("7a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


def _id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


def _http_date(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def kestrel_scope(records: list[Any] | None = None) -> str:
    return ",".join(f"project:{p['id']}" for p in kestrel_workspace(records)["projects"])


def kestrel_workspace(records: list[Any] | None = None, *, now: datetime | None = None,
                      days_ago: float = 2.0) -> dict[str, Any]:
    """The Harvey sandbox workspace of the sample team (see the module docstring)."""
    records = [r for r in (records if records is not None else load_records()) if r.platform == "harvey"]
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    projects: dict[str, dict[str, Any]] = {}
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    history = []

    def project(name: str, created: datetime, creator: str) -> dict[str, Any]:
        if name not in projects:
            projects[name] = {"id": _id("project", name), "name": name, "created_at": created.isoformat(),
                              "creator_email": creator, "files_count": 0, "is_knowledge_base_project": False,
                              "project_updated_at": created.isoformat(), "updated_at": created.isoformat(),
                              "query_count": 0, "size_bytes": 0, "client_matter_id": None,
                              "sharing": {"user_shares": [], "workspace_shares": [{"workspace": "fennwick"}]},
                              "files": [], "review_tables": []}
        return projects[name]

    for r in records:
        email = (r.authors[0].email or r.authors[0].id) if r.authors else "reviewer@example.invalid"
        path = list(r.path) + ["Review table"] * 2
        created = r.created_at or r.updated_at
        if isinstance(r, Document) and r.doc_type == "row":
            p = project(path[0], created, email)
            file_id = _id("file", r.entity_id)
            p["files"].append({"id": file_id, "name": f"{r.title}.pdf", "content_type": "application/pdf",
                               "processing_status": "READY_TO_REVIEW", "size": 40960,
                               "uploaded_at": created.isoformat()})
            p["files_count"] += 1
            table = tables.get((path[0], path[1]))
            if table is None:
                table = {"id": _id("table", path[0], path[1]), "title": path[1], "created_at": created.isoformat(),
                         "rows": []}
                tables[(path[0], path[1])] = table
                p["review_tables"].append(table)
            table["rows"].append({
                "assigned_user": email, "event_id": len(table["rows"]) + 1, "file_id": file_id, "is_assigned": True,
                "updated_at": _http_date(r.updated_at),
                "response": {"cells": [
                    {"column_name": k, "column_question": r.title, "summary": v, "additional_context": r.text,
                     "citations": [], "is_edited": False, "is_flagged": False, "is_verified": True,
                     "verified_timestamp": r.updated_at.isoformat(), "verified_user": email}
                    for k, v in r.properties.items()]}})
        elif isinstance(r, Thread) and r.thread_type == "query":
            p = project(path[0], created, email)
            for root in r.messages:
                answer = "\n".join(m.text for m in root.replies)
                when = now - timedelta(days=days_ago) + timedelta(minutes=len(history))
                history.append({
                    "access_point": "WEB", "action": "CREATE", "cm_id": None, "parent_thread_id": None,
                    "product_surface_area": "VAULT", "subsurface": "ASSISTANT_THREAD",
                    "utc_time": when.strftime("%Y-%m-%d %H:%M:%S"), "unique_usage_id": _id("query", root.id),
                    "user": email, "vault_project_name": p["name"], "workflow_name": None, "playbook_name": None,
                    "review_table_name": None, "space_name": None, "source": "Files",
                    "metadata": {"num_columns": 0, "num_files": 0}, "query": root.text, "response": answer,
                    "feedback_comments": None, "feedback_sentiments": None,
                    "link": f"https://app.harvey.ai/assistant/{_id('query', root.id)}"})
    org = records[0].workspace_id if records else "org-kestrel"
    return {"org": {"org_id": org, "name": "Fennwick Labs"},
            "tokens": [{"token": KESTREL_TOKEN, "permissions": sorted(PERMISSIONS.values()),
                        "user": "api@fennwick.example"}],
            "client_matters": [], "history": history, "projects": list(projects.values()), "audit_logs": [],
            "rate_limits": dict(DEMO_RATE_LIMITS)}


def kestrel_edits(records: list[Any] | None = None) -> list[dict[str, Any]]:
    """The sample's cell edits as ``edit_cell`` operation bodies for the workspace above."""
    records = records if records is not None else load_records()
    rows = {r.entity_id: r for r in records if isinstance(r, Document) and r.platform == "harvey"}
    out = []
    for e in records:
        if isinstance(e, Edit) and e.platform == "harvey" and e.field.startswith("cell:") and e.entity_id in rows:
            row = rows[e.entity_id]
            path = list(row.path) + ["Review table"] * 2
            out.append({"review_table_id": _id("table", path[0], path[1]), "file_id": _id("file", row.entity_id),
                        "column_name": e.field.removeprefix("cell:"), "summary": e.after})
    return out
