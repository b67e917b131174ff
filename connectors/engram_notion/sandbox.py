"""A local Notion API (Notion-Version 2025-09-03) over an in-memory workspace.

Serves what the connector uses, in the recorded fixtures' shapes: ``POST /v1/search`` (sorted by
``last_edited_time``, cursor-paginated), ``GET /v1/pages/{id}``, ``GET /v1/pages/{id}/properties/{p}``,
``GET /v1/blocks/{id}``, ``GET /v1/blocks/{id}/children`` (100-item pages, ``next_cursor``),
``GET /v1/databases/{id}``, ``GET /v1/data_sources/{id}``, ``POST /v1/data_sources/{id}/query``,
``GET /v1/comments``, ``GET /v1/users[/me|/{id}]``, and OAuth (``GET /v1/oauth/authorize`` which
consents at once and redirects with a code, ``POST /v1/oauth/token`` with Basic auth).

Errors have Notion's shape ``{"object": "error", "status", "code", "message", "request_id"}``:
``missing_version``, ``unauthorized``, ``object_not_found``, ``validation_error``,
``invalid_request_url``, ``invalid_grant``, ``rate_limited`` (the base's budget, with
``Retry-After``), ``gateway_timeout`` (``op_set_timeout``: a ``page_size`` above a threshold times
out, as big pages do on the real API).

Edits go through ``POST /_sandbox/ops/<name>`` (see the ``op_*`` methods): each bumps
``last_edited_time`` (rounded down to the minute, like Notion) and, when a webhook URL is set,
sends a delivery signed ``X-Notion-Signature: sha256=HMAC(verification token, raw body)``.
The workspace file format is described in ``_workspace``.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engram_sdk.connectors import Sandbox

from ._webhook import SIGNATURE_HEADER, sign_webhook_payload
from ._workspace import Index, block_view, build_index, new_id, page_view, rich, title_of
from ._workspace import canon_time as _canon_time
from ._workspace import iso as _iso

__all__ = ["NotionSandbox"]

API_VERSION = "2025-09-03"
_FAULT_CODES = {401: "unauthorized", 403: "restricted_resource", 404: "object_not_found", 409: "conflict_error",
                503: "service_unavailable", 504: "gateway_timeout", 529: "service_overload"}
MAX_PAGE_SIZE = 100


class _Fail(LookupError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class NotionSandbox(Sandbox):
    platform = "notion"
    open_paths = ("/v1/oauth/",)  # authorize needs no credential; token checks the client's Basic auth

    def __init__(self, workspace: dict[str, Any] | None = None, **kwargs: Any):
        self.index = Index()
        self.timeout_above: int | None = None  # page_size above which list calls answer 504
        self.now: datetime | None = None  # pinned wall time for edits (None: the real time)
        self.codes: dict[str, dict[str, Any]] = {}  # OAuth code -> grant
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> access token
        self.subscription_id = new_id()
        super().__init__(workspace, **kwargs)

    @classmethod
    def default_workspace(cls) -> dict[str, Any]:
        """A small sample: a team wiki page with nested blocks, a child page, a data source, a comment."""
        def para(text: str) -> dict[str, Any]:
            return {"type": "paragraph", "paragraph": {"rich_text": rich(text)}}

        root = "5a4b3c2d-0000-4000-8000-0000000000a1"
        return {
            "users": [{"id": "5a4b3c2d-0000-4000-8000-0000000000f1", "name": "Ada Example",
                       "type": "person", "person": {"email": "ada@example.com"}}],
            "pages": [{"id": root, "properties": {"title": {"type": "title", "title": rich("Team wiki")}},
                       "children": [
                           {"type": "heading_1", "heading_1": {"rich_text": rich("How we ship")}},
                           para("Releases go out on Tuesdays after the review."),
                           {"type": "toggle", "toggle": {"rich_text": rich("Checklist")}, "children": [
                               {"type": "to_do", "to_do": {"rich_text": rich("Changelog written"), "checked": True}},
                               {"type": "to_do", "to_do": {"rich_text": rich("Rollback tested"), "checked": False}}]},
                           {"object": "page", "properties": {"title": {"type": "title", "title": rich("On-call")}},
                            "children": [para("Pager rotates every Monday at 09:00.")]},
                       ]}],
            "databases": [{"title": rich("Decisions"), "parent": {"type": "page_id", "page_id": root},
                           "data_sources": [{"title": rich("Decisions"),
                                             "properties": {"Name": {"type": "title", "title": {}},
                                                            "Status": {"type": "status", "status": {}}},
                                             "rows": [{"properties": {
                                                 "Name": {"type": "title", "title": rich("Adopt Postgres")},
                                                 "Status": {"type": "status", "status": {"name": "Done"}}},
                                                 "children": [para("Chosen for JSONB and row-level security.")]}]}]}],
            "comments": [{"parent": {"type": "page_id", "page_id": root},
                          "rich_text": rich("Is Tuesday still right?")}],
        }

    # --- base hooks --------------------------------------------------------------------------------

    def on_load(self) -> None:
        self.index = build_index(self.workspace)

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        if code == "internal_server_error":  # the base's injected faults: Notion's code for the status
            code = _FAULT_CODES.get(status, code)
        body = {"object": "error", "status": status, "code": code, "message": message, "request_id": new_id()}
        return JSONResponse(body, status, headers=headers)

    def sign_delivery(self, body: bytes, index: int) -> dict[str, str]:
        return {SIGNATURE_HEADER: sign_webhook_payload(body, self.webhook_secret or ""),
                "content-type": "application/json"}

    def routes(self) -> list[BaseRoute]:
        r = self._route
        return [
            Route("/v1/search", r(self.search), methods=["POST"]),
            Route("/v1/pages/{id}", r(self.get_page), methods=["GET"]),
            Route("/v1/pages/{id}/properties/{prop}", r(self.get_property), methods=["GET"]),
            Route("/v1/blocks/{id}", r(self.get_block), methods=["GET"]),
            Route("/v1/blocks/{id}/children", r(self.get_children), methods=["GET"]),
            Route("/v1/databases/{id}", r(self.get_database), methods=["GET"]),
            Route("/v1/data_sources/{id}", r(self.get_data_source), methods=["GET"]),
            Route("/v1/data_sources/{id}/query", r(self.query_data_source), methods=["POST"]),
            Route("/v1/comments", r(self.list_comments), methods=["GET"]),
            Route("/v1/users", r(self.list_users), methods=["GET"]),
            Route("/v1/users/me", r(self.me), methods=["GET"]),
            Route("/v1/users/{id}", r(self.get_user), methods=["GET"]),
            Route("/v1/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/v1/oauth/token", r(self.token), methods=["POST"]),
            Route("/v1/{rest:path}", self._invalid_url, methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        ]

    # --- request plumbing --------------------------------------------------------------------------

    def _route(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            if not request.headers.get("notion-version"):
                return self.error(400, "missing_version",
                                  "Notion-Version header failed validation: Notion-Version header should be defined.")
            body: Any = {}
            if request.method in ("POST", "PATCH"):
                raw = await request.body()
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        return self.error(400, "invalid_json", "Error parsing JSON body.")
            try:
                with self.lock:
                    result = handler(request, body)
            except _Fail as f:
                return self.error(f.status, f.code, f.message)
            if isinstance(result, Response):
                return result
            result = copy.deepcopy(result)
            result["request_id"] = new_id()
            return JSONResponse(result)

        return endpoint

    def authenticate(self, request: Request) -> Any:
        token = self.token_of(request)
        if not token or token not in self.workspace.get("tokens", ()):
            return self.error(401, "unauthorized", "API token is invalid.")
        return token

    async def _invalid_url(self, request: Request) -> Response:
        return self.error(400, "invalid_request_url", "Invalid request URL.")

    def _page_size(self, value: Any) -> int:
        if value is None or value == "":
            size = MAX_PAGE_SIZE
        else:
            try:
                size = int(value)
            except (TypeError, ValueError):
                raise _Fail(400, "validation_error", "body failed validation: page_size should be a number.") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise _Fail(400, "validation_error",
                        f"body failed validation: page_size should be ≤ `{MAX_PAGE_SIZE}`, instead was `{size}`.")
        if self.timeout_above is not None and size > self.timeout_above:
            raise _Fail(504, "gateway_timeout", "Notion timed out while processing the request.")
        return size

    def _paginate(self, items: list[dict[str, Any]], cursor: Any, size: int, kind: str) -> dict[str, Any]:
        start = 0
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(str(cursor) + "==").decode().removeprefix("c:"))
            except (ValueError, UnicodeDecodeError):
                raise _Fail(400, "validation_error", "The start_cursor provided is invalid.") from None
        page = items[start:start + size]
        more = start + size < len(items)
        nxt = base64.urlsafe_b64encode(f"c:{start + size}".encode()).decode().rstrip("=") if more else None
        return {"object": "list", "results": page, "next_cursor": nxt, "has_more": more, "type": kind, kind: {}}

    def _entity(self, eid: str, *kinds: str) -> Any:
        ent = self.index.get(eid)
        if ent is None or (kinds and ent.kind not in kinds):
            what = {"page": "page", "block": "block", "database": "database", "data_source": "data source"}
            name = what.get(kinds[0], "object") if kinds else "object"
            raise _Fail(404, "object_not_found",
                        f"Could not find {name} with ID: {eid}. Make sure the relevant pages and databases are "
                        "shared with your integration.")
        return ent

    # --- endpoints ---------------------------------------------------------------------------------

    def search(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        size = self._page_size(body.get("page_size"))
        flt = body.get("filter") or {}
        want = flt.get("value") if flt.get("property") == "object" else None
        if want not in (None, "page", "data_source"):
            raise _Fail(400, "validation_error", "body failed validation: body.filter.value should be "
                        '`"page"` or `"data_source"`.')
        trash = bool(flt.get("in_trash"))  # only trashed results, never mixed with live ones
        query = str(body.get("query") or "").lower()
        items: list[dict[str, Any]] = []
        if want in (None, "page"):
            items += [page_view(p) for p in self.index.pages() if bool(p.get("in_trash")) == trash]
        if want in (None, "data_source"):
            items += [self._ds_view(d) for d in self.index.data_sources() if bool(d.get("in_trash")) == trash]
        if query:
            items = [i for i in items if query in title_of(i).lower()]
        sort = body.get("sort") or {"timestamp": "last_edited_time", "direction": "descending"}
        items.sort(key=lambda i: (i.get(sort.get("timestamp", "last_edited_time")) or "", i["id"]),
                   reverse=sort.get("direction", "descending") == "descending")
        out = self._paginate(items, body.get("start_cursor"), size, "page_or_data_source")
        return out

    def get_page(self, request: Request, body: Any) -> dict[str, Any]:
        return page_view(self._entity(request.path_params["id"], "page").obj)

    def get_property(self, request: Request, body: Any) -> dict[str, Any]:
        page = self._entity(request.path_params["id"], "page").obj
        prop_id = request.path_params["prop"]
        prop = next((p for p in page["properties"].values() if p.get("id") == prop_id), None)
        if prop is None:
            raise _Fail(404, "object_not_found", f"Could not find property with ID: {prop_id}.")
        kind = prop["type"]
        if kind not in ("title", "rich_text", "relation", "people"):
            return {"object": "property_item", "id": prop_id, "type": kind, kind: prop.get(kind)}
        values = prop.get(kind) or []
        items = [{"object": "property_item", "id": prop_id, "type": kind, kind: v} for v in values]
        size = self._page_size(request.query_params.get("page_size"))
        out = self._paginate(items, request.query_params.get("start_cursor"), size, "property_item")
        out["property_item"] = {"id": prop_id, "next_url": None, "type": kind, kind: {}}
        return out

    def get_block(self, request: Request, body: Any) -> dict[str, Any]:
        ent = self._entity(request.path_params["id"], "block", "page", "database")
        return block_view(ent.obj, ent.kind)

    def get_children(self, request: Request, body: Any) -> dict[str, Any]:
        ent = self._entity(request.path_params["id"], "block", "page")
        size = self._page_size(request.query_params.get("page_size"))
        kids = [block_view(c, c.get("object", "block")) for c in ent.obj.get("children") or ()
                if not c.get("in_trash")]
        return self._paginate(kids, request.query_params.get("start_cursor"), size, "block")

    def get_database(self, request: Request, body: Any) -> dict[str, Any]:
        db = self._entity(request.path_params["id"], "database").obj
        out = {k: v for k, v in db.items() if k not in ("children",)}
        out["data_sources"] = [{"id": d["id"], "name": title_of(d)} for d in db.get("data_sources") or ()]
        out["archived"] = db.get("in_trash", False)
        return out

    def _ds_view(self, ds: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in ds.items() if k != "rows"}
        db = self.index.get(ds["parent"]["database_id"])
        out["database_parent"] = db.obj.get("parent") if db else None
        out["archived"] = ds.get("in_trash", False)
        return out

    def get_data_source(self, request: Request, body: Any) -> dict[str, Any]:
        return self._ds_view(self._entity(request.path_params["id"], "data_source").obj)

    def query_data_source(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        ds = self._entity(request.path_params["id"], "data_source").obj
        size = self._page_size(body.get("page_size"))
        rows = [r for r in ds.get("rows") or () if body.get("in_trash") or not r.get("in_trash")]
        flt = body.get("filter") or {}
        if flt.get("timestamp") == "last_edited_time":
            since = (flt.get("last_edited_time") or {}).get("on_or_after")
            if since:
                rows = [r for r in rows if r["last_edited_time"] >= _canon_time(since)]
        for s in reversed(body.get("sorts") or ()):
            if s.get("timestamp") in ("last_edited_time", "created_time"):
                rows.sort(key=lambda r, k=s["timestamp"]: (r[k], r["id"]), reverse=s.get("direction") == "descending")
        return self._paginate([page_view(r) for r in rows], body.get("start_cursor"), size, "page_or_data_source")

    def _capability(self, name: str) -> None:
        if not (self.workspace.get("capabilities") or {}).get(name, True):
            raise _Fail(403, "restricted_resource",
                        "Insufficient permissions for this endpoint.")

    def list_comments(self, request: Request, body: Any) -> dict[str, Any]:
        self._capability("read_comments")
        block_id = request.query_params.get("block_id")
        if not block_id:
            raise _Fail(400, "validation_error", "query failed validation: block_id should be defined.")
        ent = self._entity(block_id, "page", "block")
        target = ent.obj["id"]
        items = [c for c in self.workspace.get("comments", ())
                 if target in ((c.get("parent") or {}).get("page_id"), (c.get("parent") or {}).get("block_id"))]
        items.sort(key=lambda c: (c["created_time"], c["id"]))
        size = self._page_size(request.query_params.get("page_size"))
        return self._paginate(items, request.query_params.get("start_cursor"), size, "comment")

    def list_users(self, request: Request, body: Any) -> dict[str, Any]:
        self._capability("read_user_information")
        size = self._page_size(request.query_params.get("page_size"))
        return self._paginate(list(self.index.users.values()), request.query_params.get("start_cursor"), size, "user")

    def me(self, request: Request, body: Any) -> dict[str, Any]:
        return self.index.bot

    def get_user(self, request: Request, body: Any) -> dict[str, Any]:
        user = self.index.users.get(request.path_params["id"])
        if user is None:
            raise _Fail(404, "object_not_found", f"Could not find user with ID: {request.path_params['id']}.")
        return user

    # --- OAuth -------------------------------------------------------------------------------------

    def _client(self, client_id: str) -> dict[str, Any] | None:
        return next((c for c in self.workspace.get("oauth_clients", ()) if c.get("client_id") == client_id), None)

    async def authorize(self, request: Request) -> Response:
        """The consent screen, consented at once: redirect to ``redirect_uri`` with a code."""
        q = request.query_params
        with self.lock:
            client = self._client(q.get("client_id", ""))
            if client is None or q.get("response_type") != "code":
                return self.error(400, "invalid_request", "Unknown client_id or response_type.")
            redirect = q.get("redirect_uri") or (client.get("redirect_uris") or [""])[0]
            if client.get("redirect_uris") and redirect not in client["redirect_uris"]:
                return self.error(400, "invalid_request", "redirect_uri is not registered for this client.")
            code = self.op_issue_oauth_code({"client_id": client["client_id"], "redirect_uri": redirect})["code"]
        params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        return RedirectResponse(f"{redirect}?{urlencode(params)}", status_code=302)

    def token(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        auth = request.headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(auth.removeprefix("Basic ").strip()).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        client = self._client(client_id)
        if not auth.startswith("Basic ") or client is None or not secrets.compare_digest(
                str(client.get("client_secret", "")), secret):
            raise _Fail(401, "unauthorized", "Invalid client credentials.")
        grant = body.get("grant_type")
        if grant == "authorization_code":
            issued = self.codes.pop(str(body.get("code")), None)
            if issued is None or issued["client_id"] != client_id:
                raise _Fail(400, "invalid_grant", "Invalid code.")
            if body.get("redirect_uri") != issued["redirect_uri"]:
                raise _Fail(400, "invalid_grant", "redirect_uri does not match the authorization request.")
        elif grant == "refresh_token":
            old = self.refresh_tokens.pop(str(body.get("refresh_token")), None)
            if old is None:
                raise _Fail(400, "invalid_grant", "Invalid refresh token.")
            if old in self.workspace["tokens"]:
                self.workspace["tokens"].remove(old)
        else:
            raise _Fail(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}.")
        access, refresh = "ntn_" + secrets.token_urlsafe(24), "nrt_" + secrets.token_urlsafe(24)
        self.workspace["tokens"].append(access)
        self.refresh_tokens[refresh] = access
        return {"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                "bot_id": self.index.bot["id"], "workspace_id": self.index.workspace_id,
                "workspace_name": self.index.workspace_name, "workspace_icon": None,
                "owner": {"type": "workspace", "workspace": True}, "duplicated_template_id": None}

    # --- edits (POST /_sandbox/ops/<name>) ---------------------------------------------------------

    def _now(self) -> str:
        now = self.now or datetime.now(timezone.utc)
        return _iso(now.replace(second=0, microsecond=0))  # Notion rounds down to the minute

    def _touch(self, obj: dict[str, Any], at: str | None = None) -> str:
        when = _canon_time(at) if at else self._now()
        obj["last_edited_time"] = when
        return when

    def _event(self, type_: str, entity_id: str, entity_type: str = "page", data: dict[str, Any] | None = None) -> None:
        self.deliver({
            "id": new_id(), "timestamp": _iso(self.now or datetime.now(timezone.utc)),
            "workspace_id": self.index.workspace_id, "workspace_name": self.index.workspace_name,
            "subscription_id": self.subscription_id, "integration_id": self.index.bot["id"],
            "type": type_, "authors": [{"id": self.index.bot["id"], "type": "bot"}], "attempt_number": 1,
            "api_version": API_VERSION, "entity": {"id": entity_id, "type": entity_type}, "data": data or {},
        })

    def _parent_data(self, page: dict[str, Any]) -> dict[str, Any]:
        parent = page.get("parent") or {}
        kind = parent.get("type")
        if kind == "data_source_id":
            return {"parent": {"id": parent["database_id"], "type": "database",
                               "data_source_id": parent["data_source_id"]}}
        if kind in ("page_id", "block_id"):
            return {"parent": {"id": parent[kind], "type": kind.removesuffix("_id")}}
        return {"parent": {"id": self.index.workspace_id, "type": "space"}}

    def _reindex(self) -> None:
        self.index = build_index(self.workspace)

    def op_set_time(self, body: dict[str, Any]) -> str:
        """Pin the wall time used for edits: ``{"time": ISO}``, or ``{"advance": seconds}``."""
        if "time" in body:
            self.now = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
        elif "advance" in body:
            self.now = (self.now or datetime.now(timezone.utc)) + timedelta(seconds=float(body["advance"]))
        else:
            self.now = None
        return self._now()

    def op_set_timeout(self, body: dict[str, Any]) -> None:
        """``{"page_size_above": N}``: list calls asking for more than N items answer 504."""
        value = body.get("page_size_above")
        self.timeout_above = None if value is None else int(value)

    def op_issue_oauth_code(self, body: dict[str, Any]) -> dict[str, str]:
        code = "code_" + secrets.token_urlsafe(16)
        self.codes[code] = {"client_id": body["client_id"], "redirect_uri": body.get("redirect_uri")}
        return {"code": code}

    def op_send_verification(self, body: dict[str, Any]) -> None:
        """The one-time ``{"verification_token": ...}`` request (token: the webhook secret)."""
        self.deliver({"verification_token": self.webhook_secret or ""})

    def op_create_page(self, body: dict[str, Any]) -> dict[str, str]:
        """``{"parent_id": page|data source|None, "title", "text"?, "children"?, "properties"?, "id"?, "at"?}``."""
        page: dict[str, Any] = {"object": "page", "id": body.get("id") or new_id(),
                                "properties": copy.deepcopy(body.get("properties") or {})}
        page["properties"].setdefault("title", {"id": "title", "type": "title", "title": rich(body.get("title", ""))})
        page["children"] = copy.deepcopy(body.get("children") or [])
        if body.get("text"):
            page["children"].append(_paragraph(body["text"]))
        when = _canon_time(body["at"]) if body.get("at") else self._now()
        page["created_time"] = page["last_edited_time"] = when
        self._container_for(body.get("parent_id")).append(page)
        self._reindex()
        self._event("page.created", page["id"], data=self._parent_data(self.index.get(page["id"]).obj))
        return {"id": page["id"]}

    def _container_for(self, parent_id: str | None) -> list[dict[str, Any]]:
        if not parent_id:
            return self.workspace["pages"]
        ent = self._entity(parent_id, "page", "block", "data_source")
        if ent.kind == "data_source":
            return ent.obj.setdefault("rows", [])
        return ent.obj.setdefault("children", [])

    def op_edit_page(self, body: dict[str, Any]) -> None:
        """``{"id", "title"?, "text"? (replaces the body), "append"? (adds a paragraph),
        "properties"?, "at"?}``."""
        page = self._entity(body["id"], "page").obj
        if "title" in body:
            for prop in page["properties"].values():
                if prop.get("type") == "title":
                    prop["title"] = rich(body["title"])
        if "properties" in body:
            page["properties"].update(copy.deepcopy(body["properties"]))
        if "text" in body:
            page["children"] = [c for c in page.get("children") or () if c.get("object") in ("page", "database")]
            page["children"].insert(0, _paragraph(body["text"]))
        if "append" in body:
            page.setdefault("children", []).append(_paragraph(body["append"]))
        self._touch(page, body.get("at"))
        self._reindex()
        updated = "page.properties_updated" if "properties" in body or "title" in body else "page.content_updated"
        self._event(updated, page["id"], data=self._parent_data(page))

    def op_edit_block(self, body: dict[str, Any]) -> None:
        """``{"id", "text", "at"?}``: replace a text block's rich text; its page is edited too."""
        block = self._entity(body["id"], "block").obj
        payload = block.setdefault(block["type"], {})
        payload["rich_text"] = rich(body["text"])
        when = self._touch(block, body.get("at"))
        page_id = self.index.page_of(block["id"])
        if page_id:
            self._touch(self.index.get(page_id).obj, when)
            self._event("page.content_updated", page_id,
                        data={**self._parent_data(self.index.get(page_id).obj),
                              "updated_blocks": [{"id": block["id"], "type": "block"}]})

    def op_move_page(self, body: dict[str, Any]) -> None:
        """``{"id", "parent_id"}`` (a page, block, data source, or None for the workspace)."""
        ent = self._entity(body["id"], "page")
        ent.container.remove(ent.obj)
        ent.obj.pop("parent", None)
        self._container_for(body.get("parent_id")).append(ent.obj)
        self._touch(ent.obj, body.get("at"))
        self._reindex()
        self._event("page.moved", ent.obj["id"], data=self._parent_data(self.index.get(body["id"]).obj))

    def op_trash_page(self, body: dict[str, Any]) -> None:
        page = self._entity(body["id"], "page").obj
        page["in_trash"] = True
        self._touch(page, body.get("at"))
        self._event("page.deleted", page["id"], data=self._parent_data(page))

    def op_restore_page(self, body: dict[str, Any]) -> None:
        page = self._entity(body["id"], "page").obj
        page["in_trash"] = False
        self._touch(page, body.get("at"))
        self._event("page.undeleted", page["id"], data=self._parent_data(page))

    def op_delete_page(self, body: dict[str, Any]) -> None:
        """Gone for good (emptied from the trash, or unshared): every call about it answers 404."""
        ent = self._entity(body["id"], "page")
        ent.container.remove(ent.obj)
        self._reindex()
        if body.get("notify", False):
            self._event("page.deleted", ent.obj["id"], data=self._parent_data(ent.obj))

    def op_add_comment(self, body: dict[str, Any]) -> dict[str, str]:
        """``{"parent_id": page or block, "text", "discussion_id"?, "at"?}``."""
        ent = self._entity(body["parent_id"], "page", "block")
        key = "page_id" if ent.kind == "page" else "block_id"
        when = _canon_time(body["at"]) if body.get("at") else self._now()
        comment = {"object": "comment", "id": new_id(), "parent": {"type": key, key: ent.obj["id"]},
                   "discussion_id": body.get("discussion_id") or new_id(), "created_time": when,
                   "last_edited_time": when, "created_by": {"object": "user", "id": self.index.bot["id"]},
                   "rich_text": rich(body["text"]),
                   "display_name": {"type": "integration", "resolved_name": self.index.bot.get("name")}}
        self.workspace["comments"].append(comment)
        page_id = self.index.page_of(ent.obj["id"])
        self._event("comment.created", comment["id"], "comment",
                    data={"page_id": page_id, "parent": {"id": ent.obj["id"], "type": key.removesuffix("_id")}})
        return {"id": comment["id"]}


    def op_generate(self, body: dict[str, Any]) -> dict[str, int]:
        """``{"count": N, "parent_id"?: ..., "paragraphs"?: 3}``: add N pages at once (one reindex)."""
        container = self._container_for(body.get("parent_id"))
        when = self._now()
        start = len(container)
        for i in range(int(body["count"])):
            n = start + i
            container.append({"object": "page", "id": new_id(), "created_time": when, "last_edited_time": when,
                              "properties": {"title": {"id": "title", "type": "title",
                                                       "title": rich(f"Generated page {n}")}},
                              "children": [_paragraph(f"Generated page {n}, paragraph {j}.")
                                           for j in range(int(body.get("paragraphs", 3)))]})
        self._reindex()
        return {"pages": len(container)}

    def op_resolve_comment(self, body: dict[str, Any]) -> None:
        """``{"discussion_id"}``: resolve a discussion; resolved comments leave ``GET /v1/comments``."""
        before = len(self.workspace["comments"])
        self.workspace["comments"] = [c for c in self.workspace["comments"]
                                      if c.get("discussion_id") != body["discussion_id"]]
        if len(self.workspace["comments"]) == before:
            raise KeyError(f"no discussion {body['discussion_id']}")


def _paragraph(text: str) -> dict[str, Any]:
    return {"object": "block", "id": new_id(), "type": "paragraph", "paragraph": {"rich_text": rich(text)}}
