"""A local Harvey: the documented REST endpoints over a workspace held in memory.

``engram sandbox harvey --workspace FILE --port P`` serves it; tests use
``engram_sdk.connectors.serve(HarveySandbox(workspace))``. The workspace JSON is in Harvey's shapes::

    {"org": {"org_id": ..., "name": ...},
     "tokens": [{"token": ..., "permissions": ["View history", ...], "user": EMAIL}],
     "client_matters": [{id, name, description, user_email, created_at, deleted_at, ...}],
     "history": [v2 query events: unique_usage_id, utc_time, user, cm_id, query, response, ...],
     "projects": [{id, name, created_at, creator_email, sharing, ...,
                   "files": [{id, name, content_type, processing_status, size, uploaded_at,
                              root_file_id?, deleted_at?}],
                   "review_tables": [{id, title, created_at, "rows": [get_row shapes]}]}],
     "audit_logs": [{id, ip, timestamp, type, user, user_agent, data}],
     "history_v2": true,                       # false: v2 history answers 404; "forbidden": 403
     "rate_limits": {"vault": 10, ...}}        # per minute; defaults are Harvey's documented ones

Served (bearer token required on each; a token lacking the endpoint's permission gets 403):

    GET /api/whoami
    GET /api/v1/history/{usage,query}, /api/v2/history/{usage,query}   start_time, end_time (epoch s)
    GET /api/v1/vault/workspace/projects                page, per_page (<= 100)
    GET /api/v1/vault/projects/{id}/files               cursor, limit (1..100), name, sort_by, ...
    GET /api/v1/vault/get_metadata/{project_id}
    GET /api/v1/vault/get_files                         file_ids=a,b
    GET /api/v1/vault/review_table/{id}
    GET /api/v1/vault/get_row/{review_table_id}/{file_id}
    GET /api/v1/client_matters
    GET /api/v1/logs/audit/{earliest,latest,search}     search: time=<epoch>; 404 when none
    GET /api/v1/logs/audit                              from=<id> (exclusive), take (<= 1000)

Rate limits are per organisation and category, in windows that reset each minute on the
sandbox's clock (a ``FakeClock`` makes them testable); over the limit the answer is
``429 {"error": "Rate limit exceeded"}`` without ``Retry-After`` (Harvey documents no header
names). Edit operations (``POST /_sandbox/ops/<name>``): ``add_query``, ``add_feedback``,
``edit_cell``, ``verify_cell``, ``add_file``, ``replace_file``, ``delete_file``,
``delete_project``, ``add_audit_log``, ``set_permissions``; ``throttled`` reports the 429s
answered per category. The completion endpoint is not
served: the connector never calls it (see ``_assumptions.STREAMING_FORMAT``).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from engram_sdk.connectors import Clock, Sandbox

from ._assumptions import AUDIT_MAX_TAKE, HISTORY_MAX_WINDOW_DAYS, PERMISSIONS, RATE_LIMITS_PER_MINUTE
from ._normalize import parse_time
from ._sample import sample_workspace

__all__ = ["HarveySandbox"]

DAY = 86_400
_YEAR = 365 * DAY  # Harvey: start_time at most a year back
_QUERY_ONLY = ("query", "response", "feedback_comments", "feedback_sentiments", "link")


def _ts(value: Any) -> float:
    dt = parse_time(value)
    return dt.timestamp() if dt else 0.0


def _find(items: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any]:
    for item in items:
        if item.get(key) == value:
            return item
    raise KeyError(f"no item with {key}={value!r}")


class HarveySandbox(Sandbox):
    platform = "harvey"

    def __init__(self, workspace: dict[str, Any] | None = None, *, clock: Clock | None = None,
                 epoch: float | None = None):
        # Wall time (history windows, timestamps of edits) = ``epoch`` (default: now) + real time
        # elapsed. Rate-limit windows run on ``clock`` instead, so a FakeClock makes them testable
        # without moving the wall time the connector computes its history windows from.
        self._epoch0 = time.time() if epoch is None else epoch
        self._real0 = time.time()
        self._windows_rl: dict[str, tuple[int, int]] = {}
        self.throttled_by: Counter[str] = Counter()  # 429s answered for rate limits, by category
        super().__init__(workspace, clock=clock)
        self._mono0 = self.clock.monotonic()

    @classmethod
    def default_workspace(cls) -> dict[str, Any]:
        """A small sample organisation, dated relative to now (``engram sandbox harvey``)."""
        return sample_workspace()

    # --- plumbing ----------------------------------------------------------------------------------

    def now(self) -> float:
        return self._epoch0 + (time.time() - self._real0)

    def on_load(self) -> None:
        ws = self.workspace
        for key in ("tokens", "client_matters", "history", "projects", "audit_logs"):
            ws.setdefault(key, [])
        ws.setdefault("org", {"org_id": "org-sandbox", "name": "Sandbox LLP"})
        ws.setdefault("history_v2", True)
        for p in ws["projects"]:
            p.setdefault("files", [])
            p.setdefault("review_tables", [])

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        # Harvey's documented error body: {"error": "Missing start_time"}
        return JSONResponse({"error": message}, status, headers=headers)

    def routes(self) -> list[BaseRoute]:
        g = self._guarded
        return [
            Route("/api/whoami", g(None, None, self.whoami)),
            Route("/api/v1/history/usage", g("history", "history", self.history_v1)),
            Route("/api/v1/history/query", g("history", "history", self.history_v1)),
            Route("/api/v2/history/usage", g("history", "history", self.history_v2)),
            Route("/api/v2/history/query", g("history", "history", self.history_v2)),
            Route("/api/v1/vault/workspace/projects", g("vault", "vault", self.list_projects)),
            Route("/api/v1/vault/projects/{project_id}/files", g("vault", "vault", self.list_files)),
            Route("/api/v1/vault/get_metadata/{project_id}", g("vault", "vault", self.project_metadata)),
            Route("/api/v1/vault/get_files", g("vault", "vault", self.get_files)),
            Route("/api/v1/vault/review_table/{table_id}", g("vault", "vault", self.review_table)),
            Route("/api/v1/vault/get_row/{table_id}/{file_id}", g("vault", "vault", self.get_row)),
            Route("/api/v1/client_matters", g("client_matters", "client_matters", self.client_matters)),
            Route("/api/v1/logs/audit/earliest", g("audit", "audit", self.audit_earliest)),
            Route("/api/v1/logs/audit/latest", g("audit", "audit", self.audit_latest)),
            Route("/api/v1/logs/audit/search", g("audit", "audit", self.audit_search)),
            Route("/api/v1/logs/audit", g("audit", "audit", self.audit_page)),
        ]

    def authenticate(self, request: Request) -> Any:
        """The token's entry in the workspace (``{"token", "permissions"}``), or Harvey's 401."""
        token = self.token_of(request)
        entry = next((t for t in self.workspace["tokens"] if t.get("token") == token), None)
        if token is None or entry is None:
            return self.error(401, "unauthorized", "Unauthorized")
        return entry

    def _guarded(self, category: str | None, stream: str | None, fn: Callable[[Request, dict[str, Any]], Response]):
        """Check the stream's permission, count the category's rate window, then answer."""

        async def endpoint(request: Request) -> Response:
            entry = request.state.principal
            with self.lock:
                if stream is not None:
                    needed = PERMISSIONS[stream]
                    if needed not in (entry.get("permissions") or []):
                        return self.error(403, "forbidden", f"Token lacks the '{needed}' permission")
                if category is not None and not self._take(category):
                    self.throttled += 1  # the base's count, in /_sandbox/stats
                    self.throttled_by[category] += 1
                    return self.error(429, "rate_limited", "Rate limit exceeded")
                return fn(request, entry)

        return endpoint

    def _take(self, category: str) -> bool:
        limit = int((self.workspace.get("rate_limits") or {}).get(category, RATE_LIMITS_PER_MINUTE[category]))
        minute = int((self.clock.monotonic() - self._mono0) // 60)
        start, used = self._windows_rl.get(category, (minute, 0))
        if start != minute:
            used = 0
        if used >= limit:
            return False
        self._windows_rl[category] = (minute, used + 1)
        return True

    # --- identity ------------------------------------------------------------------------------------

    def whoami(self, request: Request, token: dict[str, Any]) -> Response:
        org = self.workspace["org"]
        return JSONResponse(
            {
                "email": token.get("user", "api@sandbox.harvey"),
                "org_id": org.get("org_id"),
                "organization_name": org.get("name"),
                "permissions": token.get("permissions", []),
            }
        )

    # --- history -------------------------------------------------------------------------------------

    def _window(self, request: Request) -> tuple[float, float] | Response:
        q = request.query_params
        for name in ("start_time", "end_time"):
            if name not in q:
                return self.error(400, "bad_request", f"Missing {name}")
        try:
            start, end = float(q["start_time"]), float(q["end_time"])
        except ValueError:
            return self.error(400, "bad_request", "start_time and end_time must be epoch seconds")
        if end < start:
            return self.error(400, "bad_request", "end_time must be after start_time")
        if end - start > HISTORY_MAX_WINDOW_DAYS * DAY:
            return self.error(400, "bad_request", f"Time window must be at most {HISTORY_MAX_WINDOW_DAYS} days")
        if start < self.now() - _YEAR:
            return self.error(400, "bad_request", "start_time must be within the last year")
        return start, end

    def _events(self, start: float, end: float) -> list[dict[str, Any]]:
        return [e for e in self.workspace["history"] if start <= _ts(e.get("utc_time")) <= end]

    def history_v2(self, request: Request, token: dict[str, Any]) -> Response:
        v2 = self.workspace.get("history_v2", True)
        if v2 == "forbidden":
            return self.error(403, "forbidden", "History export v2 is not enabled for this organization")
        if not v2:
            return self.error(404, "not_found", "Not Found")
        window = self._window(request)
        if isinstance(window, Response):
            return window
        with_files = request.query_params.get("include_file_ids", "false").lower() == "true"
        is_query = request.url.path.endswith("/query")
        out = []
        for e in self._events(*window):
            item = dict(e)
            if not is_query:
                for k in _QUERY_ONLY:
                    item.pop(k, None)
            if not with_files:
                item.pop("file_ids", None)
            out.append(item)
        return JSONResponse({"events": out})

    def history_v1(self, request: Request, token: dict[str, Any]) -> Response:
        window = self._window(request)
        if isinstance(window, Response):
            return window
        is_query = request.url.path.endswith("/query")
        matters = {m.get("id"): m.get("name") for m in self.workspace["client_matters"]}
        out = []
        for i, e in enumerate(self._events(*window)):
            item = {
                "event_id": i + 1,
                "message_ID": e.get("unique_usage_id"),
                "Time": e.get("utc_time"),
                "User": e.get("user"),
                "Task": "Vault Review" if e.get("product_surface_area") == "VAULT" else "Assist",
                "Client Matter #": matters.get(e.get("cm_id"), e.get("cm_id")),
                "Source": e.get("source"),
                "Number of documents": len(e.get("file_ids") or []),
                "Feedback Comments": e.get("feedback_comments"),
                "Feedback Sentiment": e.get("feedback_sentiments"),
                "Link": e.get("link"),
            }
            if is_query:
                item.update({"Query": e.get("query"), "Response": e.get("response"), "Documents": []})
            out.append(item)
        return JSONResponse(out)

    # --- vault ---------------------------------------------------------------------------------------

    def _project(self, project_id: str) -> dict[str, Any] | None:
        return next((p for p in self.workspace["projects"] if p.get("id") == project_id and not p.get("deleted_at")),
                    None)

    def _file(self, file_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for p in self.workspace["projects"]:
            for f in p["files"]:
                if f.get("id") == file_id:
                    return p, f
        return None

    def list_projects(self, request: Request, token: dict[str, Any]) -> Response:
        q = request.query_params
        try:
            page, per_page = int(q.get("page", 1)), int(q.get("per_page", 20))
        except ValueError:
            return self.error(400, "bad_request", "page and per_page must be integers")
        if page < 1 or not 1 <= per_page <= 100:
            return self.error(400, "bad_request", "page must be >= 1 and per_page between 1 and 100")
        projects = [p for p in self.workspace["projects"] if not p.get("deleted_at")]
        if q.get("name"):
            projects = [p for p in projects if q["name"].lower() in str(p.get("name", "")).lower()]
        total = len(projects)
        chunk = projects[(page - 1) * per_page : page * per_page]
        listed = []
        for p in chunk:
            item = {k: v for k, v in p.items() if k not in ("files", "review_tables", "client_matter_id")}
            item["files_count"] = sum(1 for f in p["files"] if not f.get("deleted_at"))
            listed.append(item)
        pagination = {"page": page, "per_page": per_page, "total": total,
                      "total_pages": max(1, -(-total // per_page))}
        return JSONResponse({"response": {"content": {"pagination": pagination, "projects": listed}}})

    def list_files(self, request: Request, token: dict[str, Any]) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self.error(404, "not_found", "Project not found")
        q = request.query_params
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            return self.error(400, "bad_request", "limit must be an integer")
        if not 1 <= limit <= 100:
            return self.error(400, "bad_request", "limit must be between 1 and 100")
        files = [f for f in project["files"] if not f.get("deleted_at")]
        if q.get("name"):
            files = [f for f in files if q["name"].lower() in str(f.get("name", "")).lower()]
        statuses = q.getlist("processing_status[]") or q.getlist("processing_status")
        if statuses:
            files = [f for f in files if f.get("processing_status") in statuses]
        if q.get("uploaded_after"):
            files = [f for f in files if _ts(f.get("uploaded_at")) >= float(q["uploaded_after"])]
        if q.get("uploaded_before"):
            files = [f for f in files if _ts(f.get("uploaded_at")) <= float(q["uploaded_before"])]
        sort_by = q.get("sort_by", "uploaded_at")
        keyfn = {"name": lambda f: str(f.get("name")), "size": lambda f: f.get("size") or 0}.get(
            sort_by, lambda f: _ts(f.get("uploaded_at")))
        files.sort(key=lambda f: (keyfn(f), str(f.get("id"))), reverse=q.get("sort_order") == "desc")
        offset = 0
        if q.get("cursor"):
            cursor = q["cursor"]
            if len(cursor) > 2048:
                return self.error(400, "bad_request", "cursor too long")
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(cursor.encode()))["o"])
            except (ValueError, KeyError, TypeError):
                return self.error(400, "bad_request", "Invalid cursor")
        chunk = files[offset : offset + limit]
        more = offset + limit < len(files)
        next_cursor = base64.urlsafe_b64encode(json.dumps({"o": offset + limit}).encode()).decode() if more else None
        items = [{k: v for k, v in f.items() if k != "deleted_at"} for f in chunk]
        return JSONResponse({"files": items, "pagination": {"page_size": limit, "has_more": more,
                                                            "next_cursor": next_cursor, "total_count": len(files)}})

    def project_metadata(self, request: Request, token: dict[str, Any]) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self.error(404, "not_found", "Project not found")
        live = [f for f in project["files"] if not f.get("deleted_at")]
        return JSONResponse({
            "project_id": project["id"],
            "file_ids": [f["id"] for f in live],
            "file_count": len(live),
            "max_file_count": 10_000,
            "project_size": sum(int(f.get("size") or 0) for f in live),
            "max_project_size": 100 * 2**30,
            "review_table_ids": [t["id"] for t in project["review_tables"]],
        })

    def get_files(self, request: Request, token: dict[str, Any]) -> Response:
        ids = [i for i in request.query_params.get("file_ids", "").split(",") if i]
        if not ids:
            return self.error(400, "bad_request", "Missing file_ids")
        out = []
        for fid in ids:
            found = self._file(fid)
            if found is None:
                out.append({"file_id": fid, "error": "not_found"})
                continue
            f = found[1]
            out.append({"file_id": fid, "file_name": f.get("name"), "processing_status": f.get("processing_status"),
                        "content_type": f.get("content_type"), "deleted_at": f.get("deleted_at"),
                        "root_file_id": f.get("root_file_id")})
        return JSONResponse({"files": out})

    def _table(self, table_id: str) -> dict[str, Any] | None:
        for p in self.workspace["projects"]:
            for t in p["review_tables"]:
                if t.get("id") == table_id:
                    return t
        return None

    def review_table(self, request: Request, token: dict[str, Any]) -> Response:
        table = self._table(request.path_params["table_id"])
        if table is None:
            return self.error(404, "not_found", "Review table not found")
        return JSONResponse({"id": table["id"], "title": table.get("title"), "created_at": table.get("created_at"),
                             "file_ids": [r.get("file_id") for r in table.get("rows", [])]})

    def get_row(self, request: Request, token: dict[str, Any]) -> Response:
        table = self._table(request.path_params["table_id"])
        row = None
        if table is not None:
            row = next((r for r in table.get("rows", []) if r.get("file_id") == request.path_params["file_id"]), None)
        if row is None:
            return self.error(404, "not_found", "Row not found")
        return JSONResponse(row)

    # --- client matters --------------------------------------------------------------------------------

    def client_matters(self, request: Request, token: dict[str, Any]) -> Response:
        return JSONResponse(self.workspace["client_matters"])

    # --- audit logs ------------------------------------------------------------------------------------

    def _logs(self) -> list[dict[str, Any]]:
        return sorted(self.workspace["audit_logs"], key=lambda e: (_ts(e.get("timestamp")), str(e.get("id"))))

    def audit_earliest(self, request: Request, token: dict[str, Any]) -> Response:
        logs = self._logs()
        return JSONResponse({"log": logs[0]}) if logs else self.error(404, "not_found", "No audit logs")

    def audit_latest(self, request: Request, token: dict[str, Any]) -> Response:
        logs = self._logs()
        return JSONResponse({"log": logs[-1]}) if logs else self.error(404, "not_found", "No audit logs")

    def audit_search(self, request: Request, token: dict[str, Any]) -> Response:
        if "time" not in request.query_params:
            return self.error(400, "bad_request", "Missing time")
        at = float(request.query_params["time"])
        if at < self.now() - _YEAR:
            return self.error(400, "bad_request", "time must be within the last year")
        hit = next((e for e in self._logs() if _ts(e.get("timestamp")) >= at), None)
        return JSONResponse({"log": hit}) if hit else self.error(404, "not_found", "No audit log at or after time")

    def audit_page(self, request: Request, token: dict[str, Any]) -> Response:
        q = request.query_params
        if "from" not in q:
            return self.error(400, "bad_request", "Missing from")
        try:
            take = int(q.get("take", 100))
        except ValueError:
            return self.error(400, "bad_request", "take must be an integer")
        if not 1 <= take <= AUDIT_MAX_TAKE:
            return self.error(400, "bad_request", f"take must be between 1 and {AUDIT_MAX_TAKE}")
        logs = self._logs()
        index = next((i for i, e in enumerate(logs) if e.get("id") == q["from"]), None)
        if index is None:
            return self.error(404, "not_found", "Audit log not found")
        return JSONResponse({"logs": logs[index + 1 : index + 1 + take]})

    # --- edit operations (POST /_sandbox/ops/<name>) -------------------------------------------------

    def _stamp(self) -> str:
        return datetime.fromtimestamp(self.now(), timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    def op_add_query(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append a v2 query event; ``utc_time`` and ``unique_usage_id`` default to now and a new uuid."""
        event = dict(body)
        event.setdefault("unique_usage_id", str(uuid.uuid4()))
        event.setdefault("utc_time", self._stamp())
        self.workspace["history"].append(event)
        return event

    def op_add_feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        event = _find(self.workspace["history"], "unique_usage_id", body["unique_usage_id"])
        event["feedback_comments"] = body.get("comments")
        event["feedback_sentiments"] = body.get("sentiment")
        return event

    def _cell(self, body: dict[str, Any]) -> dict[str, Any]:
        table = self._table(body["review_table_id"])
        if table is None:
            raise KeyError(body["review_table_id"])
        row = _find(table["rows"], "file_id", body["file_id"])
        row["updated_at"] = datetime.fromtimestamp(self.now(), timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
        return _find(row["response"]["cells"], "column_name", body["column_name"])

    def op_edit_cell(self, body: dict[str, Any]) -> dict[str, Any]:
        """A person overrides a cell's value: ``summary`` replaced, ``is_edited`` set."""
        cell = self._cell(body)
        cell["summary"] = body["summary"]
        cell["is_edited"] = True
        return cell

    def op_verify_cell(self, body: dict[str, Any]) -> dict[str, Any]:
        cell = self._cell(body)
        cell["is_verified"] = True
        cell["verified_user"] = body.get("user", "reviewer@sandbox.harvey")
        cell["verified_timestamp"] = datetime.fromtimestamp(self.now(), timezone.utc).isoformat()
        return cell

    def op_add_file(self, body: dict[str, Any]) -> dict[str, Any]:
        project = self._project(body["project_id"])
        if project is None:
            raise KeyError(body["project_id"])
        f = {"id": body.get("id") or str(uuid.uuid4()), "name": body["name"],
             "content_type": body.get("content_type", "application/pdf"), "processing_status": "READY_TO_QUERY",
             "size": int(body.get("size", 1)),
             "uploaded_at": datetime.fromtimestamp(self.now(), timezone.utc).isoformat()}
        if body.get("root_file_id"):
            f["root_file_id"] = body["root_file_id"]
        project["files"].append(f)
        return f

    def op_replace_file(self, body: dict[str, Any]) -> dict[str, Any]:
        """``duplicate_mode=replace``: a new file id whose ``root_file_id`` is the chain's first file."""
        found = self._file(body["file_id"])
        if found is None:
            raise KeyError(body["file_id"])
        project, old = found
        old["deleted_at"] = datetime.fromtimestamp(self.now(), timezone.utc).isoformat()
        return self.op_add_file({"project_id": project["id"], "id": body.get("new_id"), "name": old["name"],
                                 "content_type": old.get("content_type"), "size": body.get("size", old.get("size")),
                                 "root_file_id": old.get("root_file_id") or old["id"]})

    def op_delete_file(self, body: dict[str, Any]) -> dict[str, Any]:
        found = self._file(body["file_id"])
        if found is None:
            raise KeyError(body["file_id"])
        if body.get("purge"):
            found[0]["files"].remove(found[1])
        else:
            found[1]["deleted_at"] = datetime.fromtimestamp(self.now(), timezone.utc).isoformat()
        return {"file_id": body["file_id"]}

    def op_delete_project(self, body: dict[str, Any]) -> dict[str, Any]:
        project = self._project(body["project_id"])
        if project is None:
            raise KeyError(body["project_id"])
        project["deleted_at"] = datetime.fromtimestamp(self.now(), timezone.utc).isoformat()
        return {"message": "Project deletion is in progress"}

    def op_add_audit_log(self, body: dict[str, Any]) -> dict[str, Any]:
        entry = {"id": body.get("id") or str(uuid.uuid4()), "ip": body.get("ip", "127.0.0.1"),
                 "timestamp": body.get("timestamp")
                 or datetime.fromtimestamp(self.now(), timezone.utc).isoformat().replace("+00:00", "Z"),
                 "type": body.get("type", "api:history_fetch"), "user": body.get("user", "api@sandbox.harvey"),
                 "user_agent": body.get("user_agent", "sandbox"), "data": body.get("data", {})}
        self.workspace["audit_logs"].append(entry)
        return entry

    def op_throttled(self, body: dict[str, Any]) -> dict[str, int]:
        """How many 429s each rate category answered so far."""
        return dict(self.throttled_by)

    def op_set_permissions(self, body: dict[str, Any]) -> dict[str, Any]:
        entry = _find(self.workspace["tokens"], "token", body["token"])
        entry["permissions"] = list(body["permissions"])
        return {"token": entry["token"], "permissions": entry["permissions"]}
