"""A local Microsoft 365: Entra ID (for MSAL) and Microsoft Graph v1.0 over one TLS listener.

    with serve(MicrosoftSandbox(workspace), tls=True) as server:
        authority = f"{server.url}/{workspace['tenant']}"   # MSAL, instance_discovery=False
        graph = f"{server.url}/v1.0"                         # httpx, verify=server.ca_bundle

The workspace is JSON in Graph's own shapes (see ``../shared/platforms/microsoft.md``)::

    {"tenant": "...", "apps": [{"client_id": "...", "client_secret": "..."}],
     "users": [{"id": "...", "displayName": "...", "userPrincipalName": "..."}],
     "teams": [{"id", "displayName", "channels": [{"id", "displayName",
                 "messages": [chatMessage, each with "replies": [chatMessage, ...]]}]}],
     "notebooks": [{"id", "displayName", "sections": [{"id", "displayName",
                     "pages": [page, with "content": "<html>..."]}]}],
     "sites": [{"id", "displayName", "pages": [sitePage with canvasLayout]}],
     "drives": [{"id", "name", "items": [driveItem, files with "content" or "content_base64"]}]}

Graph routes (all under ``/v1.0``, bearer tokens from the IdP; OneNote needs a delegated one):
team and channel listings; channel messages, their ``/delta`` (``$top`` <= 50, ``$expand=replies``,
nextLink then deltaLink) and ``/replies`` (``$top`` <= 50, newest first; ``$expand=replies`` inlines
up to 1,000 and links the rest); OneNote notebooks, sections, pages (``$top`` <= 100, ``$skip``) and
page content (HTML); site pages (list, and ``/microsoft.graph.sitePage?$expand=canvasLayout``);
drive delta (``token=latest``, deleted facets, 410 ``resyncChangesApplyDifferences`` with a
``Location`` for an expired token) and item content (302 to a download URL); subscriptions
(create with the validation handshake to ``notificationUrl`` and ``lifecycleNotificationUrl``,
renew, delete, each resource's maximum lifetime) with real deliveries, encrypted and signed when
``includeResourceData``. Errors have Graph's shape (``error.code``, ``message``, ``innerError``).

Admin operations (``POST /_sandbox/ops/<name>``, see the ``op_*`` methods) edit the workspace
the way users would, approve device-code logins, expire tokens and send lifecycle events. The
base class adds request counting, injected faults (429 with ``Retry-After``), budgets and revoked
tokens (see ``engram_sdk.connectors.Sandbox``).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from engram_sdk.connectors import Clock, Sandbox, SystemClock

from ._sandbox_idp import IdentityProvider
from ._sandbox_subscriptions import SubscriptionService

__all__ = ["MicrosoftSandbox"]

REPLIES_INLINE = 1000
_CODE = {  # the base class's generic codes in Graph's words
    "rate_limited": "TooManyRequests",
    "internal_server_error": "serviceNotAvailable",
    "unauthorized": "InvalidAuthenticationToken",
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _enc(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _dec(token: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise ValueError("malformed token") from None
    if not isinstance(value, dict):
        raise ValueError("malformed token")
    return value


def _public(obj: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in obj.items() if not k.startswith("_") and k not in drop}


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name) or request.query_params.get(name.lstrip("$"))
    if raw is None:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be positive")
    return value


class MicrosoftSandbox(Sandbox):
    platform = "microsoft"
    requires_tls = True  # MSAL refuses http:// authorities; `engram sandbox microsoft` serves https

    def __init__(self, workspace: dict[str, Any] | None = None, *, clock: Clock | None = None, token_lifetime: int = 3599):
        self.seq = 0
        self.epoch = 0  # delta tokens minted before the current epoch are expired (410)
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self._last_id = 0
        self.broken_paging: set[tuple[str, str]] = set()  # channels whose delta fails after page 1
        self.expire_after: int | None = None  # Graph requests left before every access token expires
        self.subs = SubscriptionService(self)
        self.idp = IdentityProvider(self, clock or SystemClock(), token_lifetime=token_lifetime)
        super().__init__(workspace, clock=clock)
        self.idp.clock = self.clock

    # --- the base class's hooks ------------------------------------------------------------------

    @classmethod
    def default_workspace(cls) -> dict[str, Any]:
        """What ``engram sandbox microsoft`` serves without ``--workspace``: the benchmark's
        generator at 100 items (app ``bench-app`` / ``bench-secret``, tenant ``bench-tenant``)."""
        from .bench import bench_workspace

        return bench_workspace(100)

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        request_id = str(uuid.uuid4())
        inner: dict[str, Any] = {"date": _now().strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id,
                                 "client-request-id": request_id}
        code = _CODE.get(code, code)
        if status == 429:
            inner.update(code="429", message="Please retry after", status="429")
            message = "Please retry again later." if message in ("injected fault", "You have been rate limited.") else message
        hdrs = {"request-id": request_id, "client-request-id": request_id, **(headers or {})}
        return JSONResponse({"error": {"code": code, "message": message, "innerError": inner}}, status, headers=hdrs)

    def on_load(self) -> None:
        ws = self.workspace
        self._teams = {t["id"]: t for t in ws.get("teams") or []}
        self._channels: dict[tuple[str, str], dict[str, Any]] = {}
        self._messages: dict[tuple[str, str, str], dict[str, Any]] = {}
        for team in self._teams.values():
            for ch in team.setdefault("channels", []):
                self._channels[(team["id"], ch["id"])] = ch
                for msg in ch.setdefault("messages", []):
                    self._fill_message(team["id"], ch["id"], msg, None)
                    self._messages[(team["id"], ch["id"], msg["id"])] = msg
                    for reply in msg.setdefault("replies", []):
                        self._fill_message(team["id"], ch["id"], reply, msg["id"])
                    msg["_seq"] = self._next_seq()
        self._notebooks = {n["id"]: n for n in ws.get("notebooks") or []}
        self._sections: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._pages: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for nb in self._notebooks.values():
            for sec in nb.setdefault("sections", []):
                self._sections[sec["id"]] = (nb, sec)
                for page in sec.setdefault("pages", []):
                    page.setdefault("lastModifiedDateTime", _iso(_now()))
                    page.setdefault("createdDateTime", page["lastModifiedDateTime"])
                    self._pages[page["id"]] = (sec, page)
        self._sites = {s["id"]: s for s in ws.get("sites") or []}
        for site in self._sites.values():
            for page in site.setdefault("pages", []):
                page.setdefault("lastModifiedDateTime", _iso(_now()))
                page.setdefault("eTag", f'"{{{page["id"].upper()}}},1"')
        self._drives = {d["id"]: d for d in ws.get("drives") or []}
        for drive in self._drives.values():
            for item in drive.setdefault("items", []):
                self._fill_item(drive["id"], item)

    # --- workspace helpers -----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _new_message_id(self) -> str:
        self._last_id = max(self._last_id + 1, int(time.time() * 1000))
        return str(self._last_id)

    def _fill_message(self, team: str, channel: str, msg: dict[str, Any], root: str | None) -> None:
        created = msg.setdefault("createdDateTime", _iso(_now()))
        msg.setdefault("replyToId", root)
        msg.setdefault("etag", msg["id"])
        msg.setdefault("messageType", "message")
        msg.setdefault("lastModifiedDateTime", created)
        msg.setdefault("lastEditedDateTime", None)
        msg.setdefault("deletedDateTime", None)
        msg.setdefault("subject", None)
        msg.setdefault("importance", "normal")
        msg.setdefault("locale", "en-us")
        msg.setdefault("body", {"contentType": "text", "content": ""})
        msg.setdefault("channelIdentity", {"teamId": team, "channelId": channel})
        msg.setdefault("attachments", [])
        msg.setdefault("mentions", [])
        msg.setdefault("reactions", [])
        msg.setdefault(
            "webUrl",
            f"https://teams.microsoft.com/l/message/{channel}/{msg['id']}?groupId={team}&parentMessageId={root or msg['id']}",
        )

    def _fill_item(self, drive: str, item: dict[str, Any]) -> None:
        item.setdefault("lastModifiedDateTime", _iso(_now()))
        item.setdefault("createdDateTime", item["lastModifiedDateTime"])
        item.setdefault("eTag", f'"{{{item["id"]}}},1"')
        item.setdefault("cTag", f'"c:{{{item["id"]}}},1"')
        item.setdefault("parentReference", {"driveId": drive, "path": f"/drives/{drive}/root:"})
        item["parentReference"].setdefault("driveId", drive)
        if "file" in item:
            raw = self._content_bytes(item)
            item["size"] = len(raw)
        item["_seq"] = self._next_seq()

    @staticmethod
    def _content_bytes(item: dict[str, Any]) -> bytes:
        if item.get("content_base64") is not None:
            return base64.b64decode(item["content_base64"])
        return str(item.get("content") or "").encode("utf-8")

    def _user_identity(self, user_id: str | None) -> dict[str, Any] | None:
        for user in self.workspace.get("users") or []:
            if user.get("id") == user_id:
                return {"user": {"id": user["id"], "displayName": user.get("displayName"), "userIdentityType": "aadUser"}}
        return None

    # --- auth ------------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Any:
        """Graph routes need an access token the identity platform issued (OneNote's a user's);
        the identity platform's own routes and pre-authenticated downloads need none."""
        path = request.url.path
        if not path.startswith("/v1.0/"):
            return None
        if self.expire_after is not None:
            self.expire_after -= 1
            if self.expire_after < 0:
                self.expire_after = None
                self.idp.expire_access_tokens()
        principal = self.idp.principal(self.token_of(request))
        if principal is None:
            return self.error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        if path.startswith("/v1.0/me/") and principal.user_id is None:
            return self.error(401, "40004", "The OneNote API does not support app-only authentication; "
                              "use delegated permissions.")
        return principal

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/v1.0"

    # --- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        g = "/v1.0"
        return [
            *self.idp.routes(),
            Route(f"{g}/teams", self.list_teams),
            Route(f"{g}/sites", self.list_sites),
            Route(f"{g}/drives", self.list_drives),
            Route(f"{g}/teams/{{team}}", self.get_team),
            Route(f"{g}/teams/{{team}}/channels", self.list_channels),
            Route(f"{g}/teams/{{team}}/channels/{{channel}}/messages/delta", self.messages_delta),
            Route(f"{g}/teams/{{team}}/channels/{{channel}}/messages", self.list_messages),
            Route(f"{g}/teams/{{team}}/channels/{{channel}}/messages/{{mid}}", self.get_message),
            Route(f"{g}/teams/{{team}}/channels/{{channel}}/messages/{{mid}}/replies", self.list_replies),
            Route(f"{g}/me/onenote/notebooks", self.list_notebooks),
            Route(f"{g}/me/onenote/notebooks/{{nb}}", self.get_notebook),
            Route(f"{g}/me/onenote/notebooks/{{nb}}/sections", self.list_sections),
            Route(f"{g}/me/onenote/sections/{{sec}}/pages", self.list_pages),
            Route(f"{g}/me/onenote/pages/{{page}}", self.get_page),
            Route(f"{g}/me/onenote/pages/{{page}}/content", self.get_page_content),
            Route(f"{g}/sites/{{site}}", self.get_site),
            Route(f"{g}/sites/{{site}}/pages", self.list_site_pages),
            Route(f"{g}/sites/{{site}}/pages/{{page}}/microsoft.graph.sitePage", self.get_site_page),
            Route(f"{g}/sites/{{site}}/pages/{{page}}", self.get_site_page),
            Route(f"{g}/drives/{{drive}}", self.get_drive),
            Route(f"{g}/drives/{{drive}}/root/delta", self.drive_delta),
            Route(f"{g}/drives/{{drive}}/items/{{item}}", self.get_item),
            Route(f"{g}/drives/{{drive}}/items/{{item}}/content", self.get_item_content),
            Route("/_download/{drive}/{item}/{nonce}", self.download),
            *self.subs.routes(),
        ]

    def _not_found(self, what: str) -> Response:
        return self.error(404, "itemNotFound", f"{what} was not found.")

    def _bad(self, message: str) -> Response:
        return self.error(400, "BadRequest", message)

    # --- Teams -----------------------------------------------------------------------------------

    async def list_teams(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"value": [_public(t, ("channels",)) for t in self._teams.values()]})

    async def list_sites(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"value": [_public(s, ("pages",)) for s in self._sites.values()]})

    async def list_drives(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"value": [_public(d, ("items",)) for d in self._drives.values()]})

    async def get_team(self, request: Request) -> Response:
        with self.lock:
            team = self._teams.get(request.path_params["team"])
            if team is None:
                return self._not_found("Team")
            return JSONResponse(_public(team, ("channels",)))

    async def list_channels(self, request: Request) -> Response:
        with self.lock:
            team = self._teams.get(request.path_params["team"])
            if team is None:
                return self._not_found("Team")
            return JSONResponse({"@odata.count": len(team["channels"]),
                                 "value": [_public(c, ("messages",)) for c in team["channels"]]})

    def _channel(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        key = (request.path_params["team"], request.path_params["channel"])
        ch = self._channels.get(key)
        return (ch, None) if ch is not None else (None, self._not_found("Channel"))

    def _message_json(self, request: Request, msg: dict[str, Any], expand: bool) -> dict[str, Any]:
        out = _public(msg, ("replies",))
        out["@odata.type"] = "#microsoft.graph.chatMessage"
        if expand:
            replies = sorted(msg.get("replies") or [], key=lambda r: r["createdDateTime"], reverse=True)
            out["replies@odata.count"] = len(replies)
            out["replies"] = [_public(r) for r in replies[:REPLIES_INLINE]]
            if len(replies) > REPLIES_INLINE:
                ident = msg["channelIdentity"]
                out["replies@odata.nextLink"] = (
                    f"{self._base(request)}/teams/{ident['teamId']}/channels/{ident['channelId']}/messages/"
                    f"{msg['id']}/replies?$skiptoken={_enc({'o': REPLIES_INLINE, 'top': 50})}"
                )
        return out

    async def messages_delta(self, request: Request) -> Response:
        q = request.query_params
        with self.lock:
            ch, err = self._channel(request)
            if err:
                return err
            try:
                if "$skiptoken" in q:
                    st = _dec(q["$skiptoken"])
                elif "$deltatoken" in q:
                    dt = _dec(q["$deltatoken"])
                    st = {"f": dt["s"], "t": self.seq, "o": 0, "top": dt["top"], "x": dt["x"], "e": dt["e"]}
                else:
                    top = _int_param(request, "$top", 20)
                    if top > 50:
                        return self._bad("$top may not exceed 50 for channel messages.")
                    st = {"f": 0, "t": self.seq, "o": 0, "top": top, "x": q.get("$expand") == "replies", "e": self.epoch}
            except (ValueError, KeyError):
                return self._bad("Invalid skip or delta token.")
            if st["o"] and (request.path_params["team"], request.path_params["channel"]) in self.broken_paging:
                return self.error(503, "serviceNotAvailable", "The service is temporarily unavailable.")
            if st["e"] < self.epoch:
                return self.error(410, "resyncRequired", "The delta token has expired; start a new delta round.")
            changed = sorted(
                (m for m in ch["messages"] if st["f"] < m["_seq"] <= st["t"] and (st["f"] or not m["deletedDateTime"])),
                key=lambda m: (m["_seq"], m["id"]),
            )
            page = changed[st["o"] : st["o"] + st["top"]]
            body: dict[str, Any] = {
                "@odata.context": f"{self._base(request)}/$metadata#Collection(chatMessage)",
                "value": [self._message_json(request, m, st["x"]) for m in page],
            }
            path = f"{self._base(request)}/teams/{request.path_params['team']}/channels/{request.path_params['channel']}/messages/delta"
            if st["o"] + st["top"] < len(changed):
                body["@odata.nextLink"] = f"{path}?$skiptoken={_enc(dict(st, o=st['o'] + st['top']))}"
            else:
                body["@odata.deltaLink"] = f"{path}?$deltatoken={_enc({'s': st['t'], 'top': st['top'], 'x': st['x'], 'e': st['e']})}"
            return JSONResponse(body)

    async def list_messages(self, request: Request) -> Response:
        with self.lock:
            ch, err = self._channel(request)
            if err:
                return err
            try:
                st = _dec(request.query_params["$skiptoken"]) if "$skiptoken" in request.query_params else {
                    "o": 0, "top": _int_param(request, "$top", 20), "x": request.query_params.get("$expand") == "replies"}
            except (ValueError, KeyError):
                return self._bad("Invalid skip token.")
            if st["top"] > 50:
                return self._bad("$top may not exceed 50 for channel messages.")
            msgs = sorted(ch["messages"], key=lambda m: m["createdDateTime"], reverse=True)
            page = msgs[st["o"] : st["o"] + st["top"]]
            body: dict[str, Any] = {"value": [self._message_json(request, m, st["x"]) for m in page]}
            if st["o"] + st["top"] < len(msgs):
                body["@odata.nextLink"] = f"{self._base(request)}{request.url.path.removeprefix('/v1.0')}?$skiptoken={_enc(dict(st, o=st['o'] + st['top']))}"
            return JSONResponse(body)

    async def get_message(self, request: Request) -> Response:
        with self.lock:
            key = (request.path_params["team"], request.path_params["channel"], request.path_params["mid"])
            msg = self._messages.get(key)
            if msg is None:
                return self._not_found("Message")
            return JSONResponse(self._message_json(request, msg, request.query_params.get("$expand") == "replies"))

    async def list_replies(self, request: Request) -> Response:
        with self.lock:
            key = (request.path_params["team"], request.path_params["channel"], request.path_params["mid"])
            msg = self._messages.get(key)
            if msg is None:
                return self._not_found("Message")
            try:
                st = _dec(request.query_params["$skiptoken"]) if "$skiptoken" in request.query_params else {
                    "o": 0, "top": _int_param(request, "$top", 20)}
            except (ValueError, KeyError):
                return self._bad("Invalid skip token.")
            if st["top"] > 50:
                return self._bad("$top may not exceed 50 for replies.")
            replies = sorted(msg["replies"], key=lambda r: r["createdDateTime"], reverse=True)
            body: dict[str, Any] = {"@odata.count": len(replies),
                                    "value": [_public(r) for r in replies[st["o"] : st["o"] + st["top"]]]}
            if st["o"] + st["top"] < len(replies):
                body["@odata.nextLink"] = f"{self._base(request)}{request.url.path.removeprefix('/v1.0')}?$skiptoken={_enc(dict(st, o=st['o'] + st['top']))}"
            return JSONResponse(body)

    # --- OneNote ---------------------------------------------------------------------------------

    async def list_notebooks(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"value": [_public(n, ("sections",)) for n in self._notebooks.values()]})

    async def get_notebook(self, request: Request) -> Response:
        with self.lock:
            nb = self._notebooks.get(request.path_params["nb"])
            return JSONResponse(_public(nb, ("sections",))) if nb else self._not_found("Notebook")

    async def list_sections(self, request: Request) -> Response:
        with self.lock:
            nb = self._notebooks.get(request.path_params["nb"])
            if nb is None:
                return self._not_found("Notebook")
            return JSONResponse({"value": [dict(_public(s, ("pages",)), parentNotebook={"id": nb["id"],
                                 "displayName": nb.get("displayName")}) for s in nb["sections"]]})

    def _page_json(self, request: Request, sec: dict[str, Any], page: dict[str, Any]) -> dict[str, Any]:
        out = _public(page, ("content",))
        out.update(
            self=f"{self._base(request)}/me/onenote/pages/{page['id']}",
            contentUrl=f"{self._base(request)}/me/onenote/pages/{page['id']}/content",
            parentSection={"id": sec["id"], "displayName": sec.get("displayName"),
                           "self": f"{self._base(request)}/me/onenote/sections/{sec['id']}"},
        )
        out.setdefault("links", {"oneNoteWebUrl": {"href": f"https://onenote.example/pages/{page['id']}"}})
        return out

    async def list_pages(self, request: Request) -> Response:
        with self.lock:
            found = self._sections.get(request.path_params["sec"])
            if found is None:
                return self._not_found("Section")
            _nb, sec = found
            try:
                top = _int_param(request, "$top", 20)
                skip = int(request.query_params.get("$skip", "0"))
            except ValueError:
                return self._bad("Invalid $top or $skip.")
            if top > 100:
                return self.error(400, "20129", "The $top value may not exceed 100.")
            pages = sorted(sec["pages"], key=lambda p: (p["lastModifiedDateTime"], p["id"]), reverse=True)
            body: dict[str, Any] = {"value": [self._page_json(request, sec, p) for p in pages[skip : skip + top]]}
            if skip + top < len(pages):
                body["@odata.nextLink"] = f"{self._base(request)}/me/onenote/sections/{sec['id']}/pages?$top={top}&$skip={skip + top}"
            return JSONResponse(body)

    async def get_page(self, request: Request) -> Response:
        with self.lock:
            found = self._pages.get(request.path_params["page"])
            return JSONResponse(self._page_json(request, *found)) if found else self._not_found("Page")

    async def get_page_content(self, request: Request) -> Response:
        with self.lock:
            found = self._pages.get(request.path_params["page"])
            if found is None:
                return self._not_found("Page")
            return Response(found[1].get("content") or "<html><body></body></html>", media_type="text/html")

    # --- SharePoint ------------------------------------------------------------------------------

    async def get_site(self, request: Request) -> Response:
        with self.lock:
            site = self._sites.get(request.path_params["site"])
            return JSONResponse(_public(site, ("pages",))) if site else self._not_found("Site")

    def _site_page_json(self, site: dict[str, Any], page: dict[str, Any], expand: bool) -> dict[str, Any]:
        out = _public(page, () if expand else ("canvasLayout",))
        out["@odata.type"] = "#microsoft.graph.sitePage"
        out["@odata.etag"] = page["eTag"]
        out.setdefault("parentReference", {"siteId": site["id"]})
        return out

    async def list_site_pages(self, request: Request) -> Response:
        with self.lock:
            site = self._sites.get(request.path_params["site"])
            if site is None:
                return self._not_found("Site")
            try:
                st = _dec(request.query_params["$skiptoken"]) if "$skiptoken" in request.query_params else {
                    "o": 0, "top": _int_param(request, "$top", 20)}
            except (ValueError, KeyError):
                return self._bad("Invalid skip token.")
            pages = [p for p in site["pages"] if not p.get("_deleted")]
            body: dict[str, Any] = {"value": [self._site_page_json(site, p, False) for p in pages[st["o"] : st["o"] + st["top"]]]}
            if st["o"] + st["top"] < len(pages):
                body["@odata.nextLink"] = f"{self._base(request)}/sites/{site['id']}/pages?$skiptoken={_enc(dict(st, o=st['o'] + st['top']))}"
            return JSONResponse(body)

    async def get_site_page(self, request: Request) -> Response:
        with self.lock:
            site = self._sites.get(request.path_params["site"])
            page = next((p for p in (site or {}).get("pages", []) if p["id"] == request.path_params["page"] and not p.get("_deleted")), None)
            if site is None or page is None:
                return self._not_found("Page")
            return JSONResponse(self._site_page_json(site, page, request.query_params.get("$expand") == "canvasLayout"))

    # --- drives ----------------------------------------------------------------------------------

    async def get_drive(self, request: Request) -> Response:
        with self.lock:
            drive = self._drives.get(request.path_params["drive"])
            return JSONResponse(_public(drive, ("items",))) if drive else self._not_found("Drive")

    def _item_json(self, item: dict[str, Any]) -> dict[str, Any]:
        out = _public(item, ("content", "content_base64"))
        if item.get("_deleted"):
            out = {"id": item["id"], "deleted": {"state": "deleted"}, "parentReference": {"driveId": item["parentReference"]["driveId"]}}
        return out

    async def drive_delta(self, request: Request) -> Response:
        q = request.query_params
        drive_id = request.path_params["drive"]
        with self.lock:
            drive = self._drives.get(drive_id)
            if drive is None:
                return self._not_found("Drive")
            path = f"{self._base(request)}/drives/{drive_id}/root/delta"
            try:
                if "$skiptoken" in q:
                    st = _dec(q["$skiptoken"])
                elif q.get("token") == "latest":
                    return JSONResponse({"value": [], "@odata.deltaLink": f"{path}?token={_enc({'s': self.seq, 'top': 200, 'e': self.epoch})}"})
                elif "token" in q:
                    dt = _dec(q["token"])
                    st = {"f": dt["s"], "t": self.seq, "o": 0, "top": dt["top"], "e": dt["e"]}
                else:
                    st = {"f": 0, "t": self.seq, "o": 0, "top": min(_int_param(request, "$top", 200), 1000), "e": self.epoch}
            except (ValueError, KeyError):
                return self._bad("Invalid delta token.")
            if st["e"] < self.epoch:
                return self.error(410, "resyncChangesApplyDifferences",
                                  "Resync required. Replace any local items with the server's version (including "
                                  "deletes) if you're sure that the service was up to date with your local changes "
                                  "when you last sync'd. Upload any local changes that the server doesn't know about.",
                                  {"Location": path})
            changed = sorted(
                (i for i in drive["items"] if st["f"] < i["_seq"] <= st["t"] and (st["f"] or not i.get("_deleted"))),
                key=lambda i: (i["_seq"], i["id"]),
            )
            page = changed[st["o"] : st["o"] + st["top"]]
            body: dict[str, Any] = {"value": [self._item_json(i) for i in page]}
            if st["o"] + st["top"] < len(changed):
                body["@odata.nextLink"] = f"{path}?$skiptoken={_enc(dict(st, o=st['o'] + st['top']))}"
            else:
                body["@odata.deltaLink"] = f"{path}?token={_enc({'s': st['t'], 'top': st['top'], 'e': st['e']})}"
            return JSONResponse(body)

    def _drive_item(self, request: Request) -> dict[str, Any] | None:
        drive = self._drives.get(request.path_params["drive"])
        item = next((i for i in (drive or {}).get("items", []) if i["id"] == request.path_params["item"]), None)
        return None if item is None or item.get("_deleted") else item

    async def get_item(self, request: Request) -> Response:
        with self.lock:
            item = self._drive_item(request)
            return JSONResponse(self._item_json(item)) if item else self._not_found("Item")

    async def get_item_content(self, request: Request) -> Response:
        with self.lock:
            item = self._drive_item(request)
            if item is None or "file" not in item:
                return self._not_found("Item")
            nonce = secrets.token_urlsafe(12)
            item["_download"] = nonce
            base = str(request.base_url).rstrip("/")
            return RedirectResponse(f"{base}/_download/{request.path_params['drive']}/{item['id']}/{nonce}", 302)

    async def download(self, request: Request) -> Response:
        """The pre-authenticated download URL a content request redirects to (no bearer token)."""
        with self.lock:
            drive = self._drives.get(request.path_params["drive"])
            item = next((i for i in (drive or {}).get("items", []) if i["id"] == request.path_params["item"]), None)
            if item is None or item.get("_download") != request.path_params["nonce"]:
                return self._not_found("Download")
            mime = (item.get("file") or {}).get("mimeType") or "application/octet-stream"
            return Response(self._content_bytes(item), media_type=mime)

    # --- admin operations: identity --------------------------------------------------------------

    def op_approve_device(self, body: dict[str, Any]) -> str:
        """``{"user_code": ..., "user": user id}``; ``{"user_code": "*"}`` approves the only pending one."""
        code = body["user_code"]
        if code == "*":
            pending = self.idp.pending_device_codes()
            if len(pending) != 1:
                raise LookupError(f"{len(pending)} device codes are pending, name one")
            code = pending[0]
        return self.idp.approve_device(code, body["user"])

    def op_sign_in_browser(self, body: dict[str, Any]) -> str:
        """``{"user": id}``: the user the authorization-code flow's browser step signs in as."""
        if self.idp._user(body["user"]) is None:
            raise KeyError(f"no user {body['user']!r} in the workspace")
        self.idp.browser_user = body["user"]
        return body["user"]

    def op_decline_device(self, body: dict[str, Any]) -> str:
        return self.idp.approve_device(body["user_code"], body["user"], decline=True)

    def op_expire_tokens(self, body: dict[str, Any]) -> int:
        """Every access token issued so far expires now (refresh tokens keep working)."""
        return self.idp.expire_access_tokens()

    def op_expire_tokens_after(self, body: dict[str, Any]) -> int:
        """``{"requests": N}``: after N more Graph requests every access token expires (mid-sync)."""
        self.expire_after = int(body["requests"])
        return self.expire_after

    def op_break_paging(self, body: dict[str, Any]) -> bool:
        """``{"team", "channel"}``: that channel's delta answers page 1, then 503 on every later page."""
        self.broken_paging.add((body["team"], body["channel"]))
        return True

    def op_fix_paging(self, body: dict[str, Any]) -> bool:
        self.broken_paging.clear()
        return True

    def op_revoke_grant(self, body: dict[str, Any]) -> int:
        """``{"user": id}`` and/or ``{"client_id": id}``: refresh and access tokens stop working."""
        return self.idp.revoke_grants(body.get("user"), body.get("client_id"))

    def op_set_app_secret(self, body: dict[str, Any]) -> bool:
        """Rotate an app's client secret (old one rejected from now on)."""
        for app in self.workspace.get("apps") or []:
            if app["client_id"] == body["client_id"]:
                app["client_secret"] = body["client_secret"]
                return True
        raise KeyError(body["client_id"])

    def op_expire_delta_tokens(self, body: dict[str, Any]) -> int:
        """Every delta and skip token minted so far answers 410 Gone."""
        self.epoch += 1
        return self.epoch

    def op_lifecycle(self, body: dict[str, Any]) -> int:
        """``{"subscription_id": id, "event": "reauthorizationRequired" | "subscriptionRemoved" | "missed"}``."""
        sub = self.subscriptions[body["subscription_id"]]
        url = sub.get("lifecycleNotificationUrl")
        if not url:
            raise ValueError("the subscription has no lifecycleNotificationUrl")
        if body["event"] == "subscriptionRemoved":
            del self.subscriptions[sub["id"]]
        self.subs._post(url, {"value": [{
            "subscriptionId": sub["id"],
            "subscriptionExpirationDateTime": sub["expirationDateTime"],
            "tenantId": self.idp.tenant,
            "clientState": sub.get("clientState"),
            "lifecycleEvent": body["event"],
        }]})
        return len(self.deliveries) - 1

    def op_subscriptions(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [_public(s, ("encryptionCertificate",)) for s in self.subscriptions.values()]

    # --- admin operations: content ---------------------------------------------------------------

    def _find_message(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        root = self._messages[(body["team"], body["channel"], body.get("root") or body["id"])]
        if body.get("root"):
            reply = next(r for r in root["replies"] if r["id"] == body["id"])
            return root, reply
        return root, None

    def op_post_message(self, body: dict[str, Any]) -> str:
        """``{"team", "channel", "text" | "html", "user"?, "reply_to"?, "subject"?}`` -> the new id."""
        team, channel = body["team"], body["channel"]
        ch = self._channels[(team, channel)]
        mid = self._new_message_id()
        html = body.get("html")
        msg: dict[str, Any] = {
            "id": mid,
            "subject": body.get("subject"),
            "from": self._user_identity(body.get("user")),
            "body": {"contentType": "html" if html is not None else "text", "content": html if html is not None else body["text"]},
            "createdDateTime": _iso(_now()),
        }
        root_id = body.get("reply_to")
        self._fill_message(team, channel, msg, root_id)
        if root_id:
            root = self._messages[(team, channel, root_id)]
            root["replies"].append(msg)
            root["lastModifiedDateTime"] = msg["createdDateTime"]
            root["_seq"] = self._next_seq()
            self.subs.notify_message(team, channel, root, msg, "created")
        else:
            msg["replies"] = []
            msg["_seq"] = self._next_seq()
            ch["messages"].append(msg)
            self._messages[(team, channel, mid)] = msg
            self.subs.notify_message(team, channel, msg, None, "created")
        return mid

    def op_edit_message(self, body: dict[str, Any]) -> str:
        """``{"team", "channel", "id", "root"? (for a reply), "text" | "html"}``."""
        root, reply = self._find_message(body)
        target = reply or root
        html = body.get("html")
        target["body"] = {"contentType": "html" if html is not None else "text", "content": html if html is not None else body["text"]}
        now = _iso(_now())
        target["lastEditedDateTime"] = target["lastModifiedDateTime"] = now
        target["etag"] = str(int(time.time() * 1000))
        root["lastModifiedDateTime"] = now
        root["_seq"] = self._next_seq()
        self.subs.notify_message(body["team"], body["channel"], root, reply, "updated")
        return target["id"]

    def op_delete_message(self, body: dict[str, Any]) -> str:
        """``{"team", "channel", "id", "root"?}``: soft delete, as Teams does (deletedDateTime set)."""
        root, reply = self._find_message(body)
        target = reply or root
        now = _iso(_now())
        target["deletedDateTime"] = target["lastModifiedDateTime"] = now
        target["body"] = {"contentType": "html", "content": ""}
        root["lastModifiedDateTime"] = now
        root["_seq"] = self._next_seq()
        self.subs.notify_message(body["team"], body["channel"], root, reply, "deleted")
        return target["id"]

    def op_edit_page(self, body: dict[str, Any]) -> str:
        """``{"id", "html", "title"?}`` for a OneNote page."""
        _sec, page = self._pages[body["id"]]
        page["content"] = body["html"]
        if body.get("title"):
            page["title"] = body["title"]
        page["lastModifiedDateTime"] = _iso(_now())
        return page["id"]

    def op_delete_page(self, body: dict[str, Any]) -> str:
        sec, page = self._pages.pop(body["id"])
        sec["pages"].remove(page)
        return page["id"]

    def op_edit_site_page(self, body: dict[str, Any]) -> str:
        """``{"site", "id", "html"}``: the page's first text web part gets ``html``."""
        site = self._sites[body["site"]]
        page = next(p for p in site["pages"] if p["id"] == body["id"])
        page["canvasLayout"] = {"horizontalSections": [{"id": "1", "columns": [{"id": "1", "webparts": [
            {"@odata.type": "#microsoft.graph.textWebPart", "id": str(uuid.uuid4()), "innerHtml": body["html"]}]}]}]}
        version = int(page["eTag"].rsplit(",", 1)[-1].rstrip('"')) + 1
        page["eTag"] = f'"{{{page["id"].upper()}}},{version}"'
        page["lastModifiedDateTime"] = _iso(_now())
        return page["id"]

    def op_delete_site_page(self, body: dict[str, Any]) -> str:
        site = self._sites[body["site"]]
        page = next(p for p in site["pages"] if p["id"] == body["id"])
        page["_deleted"] = True
        return page["id"]

    def op_put_file(self, body: dict[str, Any]) -> str:
        """``{"drive", "id"?, "name"?, "content" | "content_base64", "mime_type"?}``: create or update a file."""
        drive = self._drives[body["drive"]]
        item = next((i for i in drive["items"] if i["id"] == body.get("id") and not i.get("_deleted")), None)
        if item is None:
            item = {"id": body.get("id") or uuid.uuid4().hex[:16].upper(), "name": body["name"],
                    "file": {"mimeType": body.get("mime_type") or "text/plain"}}
            drive["items"].append(item)
            version = 1
        else:
            version = int(item["eTag"].rsplit(",", 1)[-1].rstrip('"')) + 1
        for key in ("content", "content_base64"):
            item.pop(key, None)
            if key in body:
                item[key] = body[key]
        if body.get("name"):
            item["name"] = body["name"]
        item["lastModifiedDateTime"] = _iso(_now())
        item["eTag"] = f'"{{{item["id"]}}},{version}"'
        item["cTag"] = f'"c:{{{item["id"]}}},{version}"'
        self._fill_item(drive["id"], item)
        self.subs.notify_drive(drive["id"])
        return item["id"]

    def op_delete_item(self, body: dict[str, Any]) -> str:
        """``{"drive", "id"}``: the item turns up in the next delta with a ``deleted`` facet."""
        drive = self._drives[body["drive"]]
        item = next(i for i in drive["items"] if i["id"] == body["id"] and not i.get("_deleted"))
        item["_deleted"] = True
        item["_seq"] = self._next_seq()
        self.subs.notify_drive(drive["id"])
        return item["id"]
