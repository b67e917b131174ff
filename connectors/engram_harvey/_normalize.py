"""Pure functions from Harvey's JSON to Engram records.

- query history (v2 events, or v1 items through ``v1_to_v2``) -> ``Thread``: the question as the
  root message, the answer and the user's feedback as its replies;
- Vault projects and files -> ``Document`` (metadata only: no download path is documented);
  ``deleted_at`` or ``error: "not_found"`` -> ``Tombstone``; a replacement file (``root_file_id``)
  -> an upsert of the chain's entity that names the file it replaces;
- review-table rows -> ``Edit`` per changed, edited or verified cell (``CellMemory`` holds what
  was last seen, so ``before`` is known; it is marked unknown when the first sighting is already
  edited);
- audit logs are never turned into records: they are for the operator, not for training.

Nothing here does I/O or logs; query text only ever lives in the records returned.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from engram_sdk.connectors import Document, Edit, Message, Person, Thread, Tombstone

from ._assumptions import HISTORY_TIME_FORMAT, REPLACED_FILE_FIELD, V1_TIME_FORMATS

__all__ = [
    "PLATFORM",
    "CellMemory",
    "chain_id",
    "file_document",
    "file_tombstone",
    "parse_time",
    "project_access",
    "project_document",
    "query_digest",
    "query_thread",
    "review_row_edits",
    "usage_id",
    "v1_to_v2",
]

PLATFORM = "harvey"
HARVEY = Person(id="harvey", name="Harvey")


# --- time ------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """Harvey's times come as "YYYY-MM-DD HH:MM:SS" (UTC), ISO 8601, RFC 1123 or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    if not isinstance(value, str):
        return None
    text = value.strip()
    for fmt in (HISTORY_TIME_FORMAT, *V1_TIME_FORMATS):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


# --- query history ---------------------------------------------------------------------------------


def v1_to_v2(item: dict[str, Any]) -> dict[str, Any]:
    """Rename a v1 history item (``Query``, ``Response``, ``Client Matter #``, ...) to v2's names.

    v1 has no ``unique_usage_id``; ``message_ID`` (else ``event_id``) plays its part.
    """
    key = item.get("message_ID") or item.get("event_id")
    return {
        "unique_usage_id": str(key) if key is not None else None,
        "utc_time": item.get("Time"),
        "user": item.get("User"),
        "query": item.get("Query"),
        "response": item.get("Response"),
        "feedback_comments": item.get("Feedback Comments"),
        "feedback_sentiments": item.get("Feedback Sentiment"),
        "link": item.get("Link"),
        "source": item.get("Source"),
        "client_matter_name": item.get("Client Matter #"),
        "task": item.get("Task"),
        "documents": item.get("Documents"),
        "api_version": "v1",
    }


def usage_id(event: dict[str, Any]) -> str | None:
    value = event.get("unique_usage_id")
    return str(value) if value else None


def query_digest(event: dict[str, Any]) -> str:
    """What changes when a query's recorded content changes (feedback added later, ...)."""
    keep = {k: event.get(k) for k in ("query", "response", "feedback_comments", "feedback_sentiments")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    text = str(value).strip()
    return [text] if text else []


def _feedback_text(event: dict[str, Any]) -> str:
    sentiments = _texts(event.get("feedback_sentiments"))
    comments = _texts(event.get("feedback_comments"))
    if not sentiments and not comments:
        return ""
    head = f"Feedback ({', '.join(sentiments)})" if sentiments else "Feedback"
    return head + (": " + "\n".join(comments) if comments else "")


def _title(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def query_thread(event: dict[str, Any], *, org_id: str, private: bool = False) -> Thread | None:
    """One query-history event -> a Thread; None for events with no query text (usage rows).

    ``visible_to`` names the asker. ``private`` marks the thread restricted to them (Harvey shows
    an assistant thread to its asker only); by default the connection's scope (the team's client
    matters and projects) is the access boundary, so the thread is the team's.
    """
    key = usage_id(event)
    question = str(event.get("query") or "").strip()
    when = parse_time(event.get("utc_time"))
    if key is None or not question or when is None:
        return None
    email = str(event.get("user") or "").strip() or None
    user = Person(id=email, email=email) if email else None
    answer = str(event.get("response") or "").strip()
    replies = []
    if answer:
        replies.append(Message(id=f"{key}:response", author=HARVEY, created_at=when, text=answer))
    feedback = _feedback_text(event)
    if feedback:
        replies.append(Message(id=f"{key}:feedback", author=user, created_at=when, text=feedback))
    root = Message(id=f"{key}:query", author=user, created_at=when, text=question, replies=replies)
    path = [
        str(p)
        for p in (
            event.get("client_matter_name") or event.get("cm_id"),
            event.get("vault_project_name"),
            event.get("workflow_name") or event.get("review_table_name") or event.get("playbook_name"),
        )
        if p
    ]
    return Thread(
        platform=PLATFORM,
        workspace_id=org_id,
        entity_id=key,
        parent_id=str(event["parent_thread_id"]) if event.get("parent_thread_id") else None,
        url=event.get("link") or None,
        path=path,
        authors=[user] if user else [],
        created_at=when,
        updated_at=when,
        visible_to=[email] if email else [],
        restricted=private and bool(email),
        thread_type="query",
        title=_title(question),
        messages=[root],
    )


# --- Vault projects and files ----------------------------------------------------------------------


def _emails(shares: Any) -> list[str]:
    out = []
    for share in shares or []:
        if isinstance(share, str):
            out.append(share)
        elif isinstance(share, dict):
            email = share.get("email") or share.get("user_email") or share.get("user_id")
            if email:
                out.append(str(email))
    return out


def _render(title: str, fields: dict[str, Any]) -> str:
    lines = [title]
    lines += [f"{k}: {v}" for k, v in fields.items() if v not in (None, "", [])]
    return "\n".join(lines)


def project_access(project: dict[str, Any]) -> tuple[list[str], bool]:
    """Who Harvey lets open a project: (creator and users it is shared with, True unless it is
    shared with the whole workspace)."""
    sharing = project.get("sharing") or {}
    creator = project.get("creator_email")
    visible = sorted({*([str(creator)] if creator else []), *_emails(sharing.get("user_shares"))})
    return visible, not sharing.get("workspace_shares")


def project_document(project: dict[str, Any], *, org_id: str, now: datetime, private: bool = False) -> Document:
    """A Vault project (or knowledge base) as a metadata Document.

    ``visible_to`` lists the explicit grants; ``private`` marks it restricted to them when Harvey
    does (not shared with the whole workspace). By default the scope is the access boundary.
    """
    pid = str(project["id"])
    name = str(project.get("name") or pid)
    created = parse_time(project.get("created_at"))
    updated = parse_time(project.get("project_updated_at")) or parse_time(project.get("updated_at")) or created
    creator = project.get("creator_email")
    visible, harvey_restricted = project_access(project)
    kind = "knowledge base" if project.get("is_knowledge_base_project") else "project"
    props = {
        "files_count": project.get("files_count"),
        "size_bytes": project.get("size_bytes"),
        "creator_email": creator,
        "is_knowledge_base_project": project.get("is_knowledge_base_project"),
    }
    return Document(
        platform=PLATFORM,
        workspace_id=org_id,
        entity_id=pid,
        path=[],
        authors=[Person(id=str(creator), email=str(creator))] if creator else [],
        created_at=created,
        updated_at=updated or now,
        visible_to=visible,
        restricted=private and harvey_restricted,
        doc_type="vault_project",
        title=name,
        text=_render(f"Vault {kind}: {name}", {"Created by": creator, "Files": project.get("files_count")}),
        properties={k: str(v) for k, v in props.items() if v is not None},
    )


def chain_id(file: dict[str, Any]) -> str:
    """The entity a file belongs to: its version chain's first file, or itself."""
    root = file.get(REPLACED_FILE_FIELD)
    return str(root) if root else str(file.get("id") or file.get("file_id"))


def file_document(
    file: dict[str, Any],
    *,
    project: dict[str, Any],
    org_id: str,
    now: datetime,
    replaces: str | None = None,
    private: bool = False,
) -> Document:
    """A Vault file as a metadata Document (the public API has no download path).

    A replacement file upserts its chain's entity (``chain_id``); ``replaces`` names the file id
    it supersedes (the one last seen in the chain, else the chain's root) and goes in the
    ``replaces_file_id`` property, next to ``file_id``, the current file. A file is visible to
    whoever may open its project (``project_access``; restricted only when ``private``).
    """
    visible, harvey_restricted = project_access(project)
    fid = str(file.get("id") or file.get("file_id"))
    name = str(file.get("name") or file.get("file_name") or fid)
    uploaded = parse_time(file.get("uploaded_at"))
    pid = str(project["id"])
    pname = str(project.get("name") or pid)
    root = file.get(REPLACED_FILE_FIELD)
    if root and replaces is None:
        replaces = str(root)
    props: dict[str, Any] = {
        "file_id": fid,
        "content_type": file.get("content_type"),
        "processing_status": file.get("processing_status"),
        "size": file.get("size"),
        "uploaded_at": uploaded.isoformat() if uploaded else None,
        "replaces_file_id": replaces if replaces and replaces != fid else None,
        "root_file_id": str(root) if root else None,
        "content": "metadata only (no documented download path)",
    }
    return Document(
        platform=PLATFORM,
        workspace_id=org_id,
        entity_id=chain_id(file),
        parent_id=pid,
        path=[pname],
        created_at=uploaded,
        updated_at=uploaded or now,
        visible_to=visible,
        restricted=private and harvey_restricted,
        doc_type="file",
        title=name,
        text=_render(
            f"File {name} in Vault project {pname}",
            {"Type": file.get("content_type"), "Size": file.get("size"), "Uploaded": props["uploaded_at"]},
        ),
        mime_type=file.get("content_type") or None,
        properties={k: str(v) for k, v in props.items() if v is not None},
    )


def file_tombstone(
    detail: dict[str, Any], *, entity_id: str, project_id: str, org_id: str, now: datetime
) -> Tombstone | None:
    """``get_files`` detail -> Tombstone when it says deleted (``deleted_at``) or ``not_found``."""
    if detail.get("error") == "not_found":
        when = now
    elif detail.get("deleted_at"):
        when = parse_time(detail["deleted_at"]) or now
    else:
        return None
    return Tombstone(
        platform=PLATFORM, workspace_id=org_id, entity_id=entity_id, parent_id=project_id, updated_at=when
    )


# --- review tables ---------------------------------------------------------------------------------


@dataclass
class CellMemory:
    """What was last seen in each review-table cell: key -> [value, is_edited, is_verified].

    The key is ``<table id>/<file id>/<column name>``; ``state()`` goes in the checkpoint.
    """

    cells: dict[str, list[Any]] = field(default_factory=dict)

    @staticmethod
    def key(table_id: str, file_id: str, column: str) -> str:
        return f"{table_id}/{file_id}/{column}"

    def state(self) -> dict[str, list[Any]]:
        return dict(sorted(self.cells.items()))


def review_row_edits(
    row: dict[str, Any],
    *,
    table: dict[str, Any],
    memory: CellMemory,
    org_id: str,
    now: datetime,
    project_name: str | None = None,
    file_name: str | None = None,
    visible_to: list[str] | None = None,
    restricted: bool = False,
) -> list[Edit]:
    """Edits for the cells of one review-table row, updating ``memory`` as it goes.

    A cell yields an Edit when its value differs from the one last seen (``before`` = that value),
    when it is edited or verified and was not on the last sighting, or when its first sighting is
    already edited or verified (``before`` unknown: Harvey does not return the AI's original).
    An unchanged, unedited cell only updates ``memory``.
    """
    table_id = str(table.get("id") or table.get("review_table_id"))
    file_id = str(row.get("file_id"))
    updated = parse_time(row.get("updated_at")) or now
    assigned = row.get("assigned_user")
    edits = []
    for cell in (row.get("response") or {}).get("cells") or []:
        column = str(cell.get("column_name") or "")
        if not column:
            continue
        value = "" if cell.get("summary") is None else str(cell.get("summary"))
        edited, verified = bool(cell.get("is_edited")), bool(cell.get("is_verified"))
        k = CellMemory.key(table_id, file_id, column)
        prev = memory.cells.get(k)
        memory.cells[k] = [value, edited, verified]
        if prev is None:
            if not (edited or verified):
                continue
            before, known = None, False
        else:
            changed = prev[0] != value
            newly_marked = (edited and not prev[1]) or (verified and not prev[2])
            if not (changed or newly_marked):
                continue
            before, known = str(prev[0]), True
        who = cell.get("verified_user") if verified and cell.get("verified_user") else assigned
        when = parse_time(cell.get("verified_timestamp")) if verified else None
        edits.append(
            Edit(
                platform=PLATFORM,
                workspace_id=org_id,
                entity_id=f"{table_id}/{file_id}",
                parent_id=table_id,
                path=[p for p in (project_name, table.get("title"), file_name) if p],
                updated_at=max(updated, when) if when else updated,
                visible_to=list(visible_to or []),
                restricted=restricted,
                field=f"cell:{column}",
                before=before,
                before_known=known,
                after=value,
                author=Person(id=str(who), email=str(who)) if who else None,
                title=str(cell.get("column_question") or column),
            )
        )
    return edits
