"""A Harvey workspace in the documented shapes, with times relative to ``now``.

Shared by the normalizer tests (which feed its pieces straight to the functions) and the sandbox
and connector tests (which load it into the sandbox).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

#: The sandbox's wall clock in the connector tests.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

SECRET_QUERY = "Draft a settlement memo for Project Nightingale: our walk-away figure is $4.2M"
SECRET_ANSWER = "Privileged: recommend opening at $6M and conceding no lower than $4.2M"

ALL_PERMISSIONS = [
    "View history",
    "View workspace projects",
    "View audit logs",
    "View client matters",
]


def htime(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def query_event(uid: str, at: datetime, **fields: Any) -> dict[str, Any]:
    event = {
        "access_point": "WEB",
        "action": "CREATE",
        "cm_id": None,
        "parent_thread_id": f"thread-{uid}",
        "product_surface_area": "ASSISTANT",
        "subsurface": "ASSISTANT_THREAD",
        "utc_time": htime(at),
        "unique_usage_id": uid,
        "user": "alice@firm.example",
        "vault_project_name": None,
        "workflow_name": None,
        "playbook_name": None,
        "review_table_name": None,
        "space_name": None,
        "source": "Files",
        "metadata": {"num_columns": 0, "num_files": 0},
        "query": f"Question {uid}?",
        "response": f"Answer {uid}.",
        "feedback_comments": None,
        "feedback_sentiments": None,
        "link": f"https://app.harvey.ai/assistant/{uid}",
    }
    event.update(fields)
    return event


def cell(column: str, summary: str, **flags: Any) -> dict[str, Any]:
    out = {
        "column_name": column,
        "column_question": f"What is the {column}?",
        "summary": summary,
        "additional_context": "",
        "citations": [{"citation_page": 1, "citation_quote": "..."}],
        "is_edited": False,
        "is_flagged": False,
        "is_verified": False,
        "verified_timestamp": None,
        "verified_user": None,
    }
    out.update(flags)
    return out


def row(file_id: str, cells: list[dict[str, Any]], at: datetime) -> dict[str, Any]:
    return {
        "assigned_user": "bob@firm.example",
        "event_id": 1001,
        "file_id": file_id,
        "is_assigned": True,
        "updated_at": at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "response": {"cells": cells},
    }


def workspace(now: datetime) -> dict[str, Any]:
    day = timedelta(days=1)
    return copy.deepcopy(
        {
            "org": {"org_id": "org-acme", "name": "Acme LLP"},
            "tokens": [
                {"token": "tok-full", "permissions": ALL_PERMISSIONS, "user": "svc@firm.example"},
                {
                    "token": "tok-no-audit",
                    "permissions": [p for p in ALL_PERMISSIONS if p != "View audit logs"],
                    "user": "svc2@firm.example",
                },
            ],
            "client_matters": [
                {
                    "id": "cm-1",
                    "user_email": "alice@firm.example",
                    "name": "M-2024-0035",
                    "description": "Nightingale acquisition",
                    "user_count": 3,
                    "total_events": 10,
                    "created_at": "2024-01-05T10:00:00Z",
                    "deleted_at": None,
                },
                {
                    "id": "cm-2",
                    "user_email": "carol@firm.example",
                    "name": "M-2024-0099",
                    "description": "Other client",
                    "user_count": 1,
                    "total_events": 2,
                    "created_at": "2024-02-05T10:00:00Z",
                    "deleted_at": None,
                },
            ],
            "history": [
                query_event(
                    "q-secret",
                    now - 2 * day,
                    cm_id="cm-1",
                    query=SECRET_QUERY,
                    response=SECRET_ANSWER,
                    feedback_comments="Spot on",
                    feedback_sentiments="positive",
                ),
                query_event("q-vault", now - 3 * day, vault_project_name="Nightingale DD", product_surface_area="VAULT"),
                query_event("q-other", now - 2 * day, cm_id="cm-2", user="carol@firm.example"),
                query_event("q-old", now - 20 * day, cm_id="cm-1"),
            ],
            "projects": [
                {
                    "id": "p-1",
                    "name": "Nightingale DD",
                    "created_at": "2025-01-10T09:00:00Z",
                    "creator_email": "alice@firm.example",
                    "files_count": 2,
                    "is_knowledge_base_project": False,
                    "project_updated_at": "2025-02-01T09:00:00Z",
                    "query_count": 4,
                    "size_bytes": 2048,
                    "updated_at": "2025-02-01T09:00:00Z",
                    "client_matter_id": "cm-1",
                    "sharing": {"user_shares": [{"email": "bob@firm.example"}], "workspace_shares": []},
                    "files": [
                        {
                            "id": "f-1",
                            "name": "SPA.pdf",
                            "content_type": "application/pdf",
                            "processing_status": "READY_TO_QUERY",
                            "size": 1024,
                            "uploaded_at": "2025-01-11T09:00:00Z",
                        },
                        {
                            "id": "f-2",
                            "name": "Disclosure.docx",
                            "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                            "processing_status": "READY_TO_REVIEW",
                            "size": 1024,
                            "uploaded_at": "2025-01-12T09:00:00Z",
                        },
                    ],
                    "review_tables": [
                        {
                            "id": "rt-1",
                            "title": "Key terms",
                            "created_at": "2025-01-13T09:00:00Z",
                            "rows": [
                                row(
                                    "f-1",
                                    [
                                        cell("Governing law", "New York"),
                                        cell("Cap", "$10M", is_edited=True),
                                    ],
                                    now - day,
                                ),
                            ],
                        }
                    ],
                },
                {
                    "id": "p-2",
                    "name": "Other matter",
                    "created_at": "2025-01-10T09:00:00Z",
                    "creator_email": "carol@firm.example",
                    "files_count": 1,
                    "is_knowledge_base_project": False,
                    "project_updated_at": "2025-02-01T09:00:00Z",
                    "query_count": 1,
                    "size_bytes": 10,
                    "updated_at": "2025-02-01T09:00:00Z",
                    "sharing": {"user_shares": [], "workspace_shares": []},
                    "files": [
                        {
                            "id": "f-9",
                            "name": "Other.pdf",
                            "content_type": "application/pdf",
                            "processing_status": "READY_TO_QUERY",
                            "size": 10,
                            "uploaded_at": "2025-01-11T09:00:00Z",
                        }
                    ],
                    "review_tables": [],
                },
            ],
            "audit_logs": [
                {
                    "id": f"00000000-0000-0000-0000-00000000000{i}",
                    "ip": "10.0.0.1",
                    "timestamp": (now - timedelta(hours=10 - i)).isoformat().replace("+00:00", "Z"),
                    "type": "api:history_fetch" if i % 2 else "auth:login",
                    "user": "alice@firm.example",
                    "user_agent": "python-httpx",
                    "data": {"n": i},
                }
                for i in range(1, 6)
            ],
        }
    )
