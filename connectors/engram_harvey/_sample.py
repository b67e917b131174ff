"""The sample workspace ``engram sandbox harvey`` serves when no ``--workspace`` is given.

Times are relative to the moment it is built, so the history is always inside Harvey's one-year
window. The shapes are the documented ones (see ``sandbox.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ._assumptions import PERMISSIONS

__all__ = ["sample_workspace"]


def _h(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _query(uid: str, at: datetime, user: str, query: str, response: str, **extra: Any) -> dict[str, Any]:
    event = {
        "access_point": "WEB", "action": "CREATE", "cm_id": None, "parent_thread_id": f"thread-{uid}",
        "product_surface_area": "ASSISTANT", "subsurface": "ASSISTANT_THREAD", "utc_time": _h(at),
        "unique_usage_id": uid, "user": user, "vault_project_name": None, "workflow_name": None,
        "playbook_name": None, "review_table_name": None, "space_name": None, "source": "Files",
        "metadata": {"num_columns": 0, "num_files": 0}, "query": query, "response": response,
        "feedback_comments": None, "feedback_sentiments": None, "link": f"https://app.harvey.ai/assistant/{uid}",
    }
    event.update(extra)
    return event


def _cell(column: str, question: str, summary: str, **flags: Any) -> dict[str, Any]:
    return {"column_name": column, "column_question": question, "summary": summary, "additional_context": "",
            "citations": [], "is_edited": False, "is_flagged": False, "is_verified": False,
            "verified_timestamp": None, "verified_user": None, **flags}


def sample_workspace(now: datetime | None = None) -> dict[str, Any]:
    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    day = timedelta(days=1)
    return {
        "org": {"org_id": "org-kestrel", "name": "Kestrel & Finch LLP"},
        "tokens": [
            {"token": "harvey-sandbox-token", "permissions": sorted(PERMISSIONS.values()),
             "user": "api@kestrel.example"},
            {"token": "harvey-sandbox-no-audit",
             "permissions": sorted(p for p in PERMISSIONS.values() if p != PERMISSIONS["audit"]),
             "user": "api2@kestrel.example"},
        ],
        "client_matters": [
            {"id": "cm-osprey", "user_email": "ana@kestrel.example", "name": "M-2026-0012",
             "description": "Osprey Logistics acquisition", "user_count": 4, "total_events": 12,
             "created_at": _iso(now - 90 * day), "deleted_at": None},
        ],
        "history": [
            _query("q-1", now - 3 * day, "ana@kestrel.example",
                   "What change-of-control clauses in the Osprey supply contracts need consent?",
                   "Three contracts (Hanse Freight, Baltic Rail, Nordport) require counterparty consent.",
                   cm_id="cm-osprey", feedback_comments="Correct, and well cited", feedback_sentiments="positive"),
            _query("q-2", now - 2 * day, "ben@kestrel.example",
                   "Summarise the indemnity cap negotiated in the Osprey SPA.",
                   "The cap is 15% of the purchase price, with fundamental warranties uncapped.",
                   vault_project_name="Osprey data room", product_surface_area="VAULT"),
        ],
        "projects": [
            {"id": "p-osprey", "name": "Osprey data room", "created_at": _iso(now - 60 * day),
             "creator_email": "ana@kestrel.example", "files_count": 1, "is_knowledge_base_project": False,
             "project_updated_at": _iso(now - 5 * day), "query_count": 3, "size_bytes": 20480,
             "updated_at": _iso(now - 5 * day), "client_matter_id": "cm-osprey",
             "sharing": {"user_shares": [{"email": "ben@kestrel.example"}], "workspace_shares": []},
             "files": [{"id": "f-spa", "name": "Osprey SPA.pdf", "content_type": "application/pdf",
                        "processing_status": "READY_TO_REVIEW", "size": 20480, "uploaded_at": _iso(now - 59 * day)}],
             "review_tables": [
                 {"id": "rt-osprey", "title": "SPA key terms", "created_at": _iso(now - 58 * day),
                  "rows": [{"assigned_user": "ben@kestrel.example", "event_id": 1, "file_id": "f-spa",
                            "is_assigned": True,
                            "updated_at": (now - 4 * day).strftime("%a, %d %b %Y %H:%M:%S GMT"),
                            "response": {"cells": [
                                _cell("Indemnity cap", "What is the indemnity cap?", "15% of the purchase price",
                                      is_edited=True),
                                _cell("Governing law", "Which law governs the agreement?", "English law"),
                            ]}}]},
             ]},
        ],
        "audit_logs": [
            {"id": f"a-{i}", "ip": "10.1.0.7", "timestamp": _iso(now - timedelta(hours=i)),
             "type": "api:history_fetch", "user": "api@kestrel.example", "user_agent": "engram", "data": {}}
            for i in range(3, 0, -1)
        ],
    }
