"""The Notion connector on the framework's contract (``engram_sdk.connectors.Connector``).

**Sync.** Discovery is ``POST /v1/search`` sorted by ``last_edited_time`` descending, one response
(up to 100 results) per batch, a checkpoint after each. ``last_edited_time`` is rounded down to the
minute and search indexing lags, so an incremental run goes down the list until it passes
``watermark - overlap`` (the watermark being the newest ``last_edited_time`` seen when the previous
run started) and de-duplicates what it finds there: a page whose stored version has the same
``last_edited_time`` is skipped unless that time is the watermark's own minute (it may have been
edited again within that minute). For each page: the whole block tree (``_traverse``), an ``Edit``
against the stored text when it changed, the ``Document``, then one ``Thread`` per comment
discussion. Data sources found by search become ``Document``s; their rows are pages and come
through search like any other page.

**Deletions and moves.** A moved page is an upsert with its new ``parent_id``, or a ``Tombstone``
(``out_of_scope``) when it left the connection's scope. Search leaves the trash out, so each run
also searches the trash (``filter: {"in_trash": true}``) down to the same bound: pages and data
sources stored alive and now trashed become ``Tombstone`` (``trashed``). Pages gone for good (404
once seen; Notion says the same for "no longer shared") become ``Tombstone`` (``deleted``) in
``fetch`` (webhooks, retries) and through ``engram sync --reconcile`` (``list_entity_ids``). Every
tombstone follows the framework's one rule (``ctx.tombstone``): only for what this team stored.

**Auth.** An internal integration token, or public OAuth: ``check`` without tokens raises
``AuthorizationPending`` with the authorization URL; with ``oauth_code`` it exchanges the code and
stores the tokens in the secrets store. A 401 refreshes once; ``invalid_grant`` or a second 401
raises ``ReconnectNeeded``.

**Webhooks.** See ``handle_webhook``.
"""

from __future__ import annotations

import hmac
import json
import secrets as _secrets
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from engram_sdk import EventStore
from engram_sdk.connectors import (
    Account,
    AuthorizationPending,
    ConfigError,
    Connections,
    Connector,
    ConnectorContext,
    Container,
    Document,
    Edit,
    ItemFailed,
    NotFound,
    PermissionDenied,
    PlatformError,
    Record,
    SecretStore,
    Thread,
    Tombstone,
    WebhookError,
    WebhookRequest,
    WebhookResult,
)

from ._client import NotionAPI
from ._normalize import (
    comments_to_threads,
    data_source_to_document,
    is_trashed,
    page_parent,
    page_title,
    page_to_document,
    parse_time,
    person,
    tombstone,
)
from ._traverse import fetch_tree
from ._webhook import SIGNATURE_HEADER, is_verification_request, parse_delivery, verify_signature

__all__ = [
    "NotionCheckpoint",
    "NotionConfig",
    "NotionConnector",
    "confirm_webhook_verification",
    "reset_webhook_verification",
    "reveal_verification_token",
]

DEFAULT_BASE_URL = "https://api.notion.com"
# Connection meta: "awaiting_verification" (no token yet) -> "awaiting_confirmation" (the first
# token is held; deliveries refused) -> "verified" (the operator confirmed it).
WEBHOOK_STATE = "webhook_state"
WEBHOOK_TOKEN = "webhook_verification_token"  # secrets-store name
WEBHOOK_TOKEN_RECEIVED = "webhook_token_received"  # meta: {"at", "from"} of the held token
WEBHOOK_LATER_TOKENS = "webhook_later_tokens"  # meta: [{"at", "from", "same_token"}], newest last
WEBHOOK_LATER_COUNT = "webhook_later_tokens_total"
_KEEP_LATER = 20  # a flood of unauthenticated requests must not grow the connection row


class NotionConfig(BaseModel):
    """``engram connect notion`` flags. Give ``token`` (internal integration) or the OAuth trio."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = Field(default=None, description="internal integration token (secret_/ntn_...)")
    oauth_client_id: str | None = Field(default=None, description="public integration's OAuth client id")
    oauth_client_secret: SecretStr | None = Field(default=None, description="public integration's OAuth secret")
    redirect_uri: str | None = Field(default=None, description="OAuth redirect URI registered with Notion")
    oauth_code: SecretStr | None = Field(default=None, description="the code Notion's redirect carried")
    base_url: str = Field(default=DEFAULT_BASE_URL, description="API root (a sandbox in tests)")
    notion_version: str = Field(default="2025-09-03", description="Notion-Version header")
    requests_per_second: float = Field(default=3.0, gt=0, description="client-side rate limit")
    overlap_minutes: int = Field(default=5, ge=0, description="re-read window below the watermark")
    page_size: int = Field(default=100, ge=1, le=100, description="items per list call (halved on 504)")
    comments: bool = Field(default=True, description="sync page comments as threads")
    block_comments: bool = Field(default=False, description="also read each block's comments (one call per block)")

    @model_validator(mode="after")
    def _one_auth(self) -> NotionConfig:
        if self.token is None and not self.oauth_client_id:
            raise ValueError("give --token (internal integration) or --oauth-client-id with its secret")
        if self.oauth_client_id and self.oauth_client_secret is None:
            raise ValueError("--oauth-client-id needs --oauth-client-secret")
        return self

    @property
    def oauth(self) -> bool:
        return self.token is None


class NotionCheckpoint(BaseModel):
    """Where a connection's sync stands; saved with the events of each search batch."""

    watermark: str | None = Field(default=None, description="newest last_edited_time of the last finished run")
    run_watermark: str | None = Field(default=None, description="newest last_edited_time of the run in progress")
    run_since: str | None = Field(default=None, description="lower bound of the run in progress (None: full)")
    cursor: str | None = Field(default=None, description="search cursor to resume the run in progress")


class NotionConnector(Connector[NotionConfig, NotionCheckpoint]):
    platform = "notion"
    description = "Notion pages, data sources, rows and comments (notion-client)"
    Config = NotionConfig
    Checkpoint = NotionCheckpoint
    scope_kinds = ("page",)  # a root page covers every page, data source and row below it
    sandbox = "engram_notion.sandbox:NotionSandbox"

    def __init__(self, config: NotionConfig, ctx: ConnectorContext):
        super().__init__(config, ctx)
        self._api: NotionAPI | None = None
        self._users: dict[str, dict[str, Any]] | None = None
        self._workspace_id: str | None = None
        self._parents: dict[str, tuple[str, str | None]] = {}  # id -> (parent kind, parent id)
        self._comments_refused = False

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def api(self) -> NotionAPI:
        if self._api is None:
            self._api = NotionAPI(
                self._access_token, base_url=self.config.base_url, notion_version=self.config.notion_version,
                requests_per_second=self.config.requests_per_second, clock=self.ctx.clock,
                refresh=self._refresh if self.config.oauth else None, http=self.ctx.http,
                page_size=self.config.page_size,
            )
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def _access_token(self) -> str:
        if self.config.token is not None:
            return self.config.token.get_secret_value()
        return self.ctx.secrets.require("access_token")

    def _refresh(self) -> bool:
        """Trade the refresh token for new tokens; False when there is none to trade."""
        refresh = self.ctx.secrets.get("refresh_token")
        if refresh is None or self.config.oauth_client_secret is None:
            return False
        tokens = self.api.oauth_token(self.config.oauth_client_id or "",
                                      self.config.oauth_client_secret.get_secret_value(),
                                      grant_type="refresh_token", refresh_token=refresh.get_secret_value())
        self._store_tokens(tokens)
        return True

    def _store_tokens(self, tokens: dict[str, Any]) -> None:
        self.ctx.secrets.set("access_token", tokens["access_token"])
        if tokens.get("refresh_token"):  # a response without one must not erase the stored one
            self.ctx.secrets.set("refresh_token", tokens["refresh_token"])

    def authorization_url(self, state: str | None = None) -> str:
        params = {"client_id": self.config.oauth_client_id or "", "response_type": "code", "owner": "user",
                  "redirect_uri": self.config.redirect_uri or "", "state": state or _secrets.token_urlsafe(12)}
        return f"{self.config.base_url.rstrip('/')}/v1/oauth/authorize?{urlencode(params)}"

    @property
    def workspace_id(self) -> str:
        if self._workspace_id is None:
            source = self.ctx.connection.source or ""
            prefix = "notion://workspace/"
            if source.startswith(prefix):
                self._workspace_id = source[len(prefix):]
            else:
                self._workspace_id = str((self.api.me().get("bot") or {}).get("workspace_id") or "unknown")
        return self._workspace_id

    def users(self) -> dict[str, dict[str, Any]]:
        """The workspace's users by id (for names and e-mails); empty when the integration lacks
        the "read user information" capability (403): people then appear by id."""
        if self._users is None:
            try:
                self._users = {u["id"]: u for u in self.api.users()}
            except PermissionDenied:
                self.ctx.log.warning("Notion users.list refused (no user-information capability): "
                                     "people are named by id")
                self._users = {}
        return self._users

    def comments(self, block_id: str) -> list[dict[str, Any]]:
        """Comments on a page or block; none, for the rest of the run, when the integration lacks
        the "read comments" capability (403)."""
        if self._comments_refused:
            return []
        try:
            return self.api.comments(block_id)
        except PermissionDenied:
            self.ctx.log.warning("Notion comments.list refused (no read-comments capability): comments skipped")
            self._comments_refused = True
            return []

    # --- check -------------------------------------------------------------------------------------

    def check(self) -> Account:
        if self.config.oauth and self.ctx.secrets.get("access_token") is None:
            code = self.config.oauth_code
            if code is None:
                raise AuthorizationPending(
                    "Open this URL, allow access to the pages for this team, then run "
                    "`engram connect notion --name " + self.ctx.connection.name + " --oauth-code CODE` "
                    "with the code from the redirect:\n" + self.authorization_url())
            tokens = self.api.oauth_token(self.config.oauth_client_id or "",
                                          self.config.oauth_client_secret.get_secret_value()
                                          if self.config.oauth_client_secret else "",
                                          grant_type="authorization_code", code=code.get_secret_value(),
                                          redirect_uri=self.config.redirect_uri)
            self._store_tokens(tokens)
            if "oauth_code" in self.ctx.secrets.names():
                self.ctx.secrets.delete("oauth_code")  # one use only
        me = self.api.me()
        bot = me.get("bot") or {}
        workspace_id = str(bot.get("workspace_id") or "")
        if not workspace_id:
            raise PlatformError("Notion users.me named no workspace: is this an integration token?")
        if WEBHOOK_STATE not in self.ctx.connection.meta:
            self.ctx.set_meta(**{WEBHOOK_STATE: "awaiting_verification"})
        return Account(source=f"notion://workspace/{workspace_id}",
                       name=str(bot.get("workspace_name") or me.get("name")),
                       details={"bot_id": me.get("id"), "workspace_id": workspace_id})

    # --- scope -------------------------------------------------------------------------------------

    def _remember(self, obj: dict[str, Any]) -> None:
        kind, pid = page_parent(obj)
        if obj.get("object") == "data_source":
            db_parent = obj.get("database_parent") or {}
            dkind = str(db_parent.get("type") or "")
            self._parents[obj["id"]] = (dkind, db_parent.get(dkind) if dkind != "workspace" else None)
        else:
            if kind == "data_source_id":
                kind, pid = "data_source_id", (obj.get("parent") or {}).get("data_source_id")
            self._parents[obj["id"]] = (kind, pid)

    def _ancestors(self, obj: dict[str, Any]) -> list[str]:
        self._remember(obj)
        out: list[str] = []
        cur = obj["id"]
        for _ in range(10_000):
            if cur not in self._parents:
                break
            kind, pid = self._parents[cur]
            if not pid or pid in out or kind == "workspace":
                break
            out.append(pid)
            if pid not in self._parents:
                try:
                    if kind == "page_id":
                        self._remember(self.api.page(pid))
                    elif kind == "block_id":
                        block = self.api.block(pid)
                        self._parents[pid] = page_parent(block)
                    elif kind == "data_source_id":
                        self._remember(self.api.data_source(pid))
                    elif kind == "database_id":
                        self._parents[pid] = page_parent(self.api.database(pid))
                except NotFound:
                    break
            cur = pid
        return out

    def in_scope(self, obj: dict[str, Any]) -> bool:
        scope = self.ctx.connection.scope
        if scope.all:
            return True
        roots = set(scope.ids("page"))
        if obj["id"] in roots:
            return True
        return any(a in roots for a in self._ancestors(obj))

    # --- sync --------------------------------------------------------------------------------------

    def sync(self, checkpoint: NotionCheckpoint | None) -> Iterator[Record | NotionCheckpoint | ItemFailed]:
        cp = checkpoint or NotionCheckpoint()
        if cp.cursor:  # resume the run a crash interrupted
            since, run_watermark, cursor = cp.run_since, cp.run_watermark, cp.cursor
        else:
            since, run_watermark, cursor = self._since(cp.watermark), None, None
        done: set[str] = set()
        for response in self.api.search_pages(start_cursor=cursor):
            reached_old = False
            for obj in response.get("results") or ():
                edited = obj.get("last_edited_time") or ""
                if run_watermark is None or edited > run_watermark:
                    run_watermark = edited
                if since is not None and edited < since:
                    reached_old = True
                    break
                if obj["id"] in done:
                    continue
                done.add(obj["id"])
                yield from self._emit(obj, cp.watermark)
            nxt = response.get("next_cursor") if response.get("has_more") else None
            if reached_old or not nxt:
                break
            yield NotionCheckpoint(watermark=cp.watermark, run_watermark=run_watermark, run_since=since, cursor=nxt)
        yield from self._trashed_since(since)
        yield NotionCheckpoint(watermark=run_watermark or cp.watermark)

    def _trashed_since(self, since: str | None) -> Iterator[Record | ItemFailed]:
        """Pages and data sources moved to the trash since ``since`` (all of the trash on a full
        run) that this connection stored alive: ``Tombstone`` (``trashed``). Search leaves the
        trash out unless asked with ``filter: {"in_trash": true}``."""
        for response in self.api.search_pages(in_trash=True):
            for obj in response.get("results") or ():
                if since is not None and (obj.get("last_edited_time") or "") < since:
                    return
                if obj.get("object") not in ("page", "data_source"):
                    continue
                gone = self._tombstone(obj, "trashed")  # empty unless stored alive
                try:
                    if gone and self.in_scope(obj):
                        yield from gone
                except PlatformError as exc:
                    yield ItemFailed.of(obj["id"], exc)

    def _since(self, watermark: str | None) -> str | None:
        if watermark is None:
            return None
        dt = parse_time(watermark) - timedelta(minutes=self.config.overlap_minutes)  # type: ignore[operator]
        return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _emit(self, obj: dict[str, Any], watermark: str | None) -> Iterator[Record | ItemFailed]:
        try:
            if obj.get("object") == "data_source":
                if self.in_scope(obj):
                    yield data_source_to_document(obj, workspace_id=self.workspace_id)
                return
            if obj.get("object") != "page":
                return
            yield from self._page_records(obj, watermark=watermark)
        except NotFound:  # listed by search, gone when read: a deletion only if it was seen before
            yield from self.ctx.tombstone(obj["id"], "deleted")
        except PlatformError as exc:  # one bad page is reported; the rest of the sync goes on
            yield ItemFailed.of(obj["id"], exc)

    def _page_records(self, page: dict[str, Any], *, watermark: str | None = None,
                      force: bool = False) -> Iterator[Record]:
        if is_trashed(page):
            yield from self._tombstone(page, "trashed")
            return
        if not self.in_scope(page):
            yield from self._tombstone(page, "out_of_scope")
            return
        previous = self.ctx.previous(page["id"])
        edited = page.get("last_edited_time") or ""
        if (not force and isinstance(previous, Document) and previous.updated_at == parse_time(edited)
                and previous.parent_id == page_parent(page)[1] and watermark is not None and edited < watermark):
            return  # this version is stored already (de-duplication inside the overlap window)
        blocks = fetch_tree(self.api, page["id"])
        doc = page_to_document(self._complete_relations(page), blocks, workspace_id=self.workspace_id,
                               users=self.users())
        editor = page.get("last_edited_by")
        edit = Edit.between(previous, doc, author=person(editor, self.users()) if editor else None)
        if edit is not None:
            yield edit
        yield doc
        if self.config.comments:
            comments = self.comments(page["id"])
            if self.config.block_comments:
                for block_id in _block_ids(blocks):
                    comments += self.comments(block_id)
            yield from comments_to_threads(comments, workspace_id=self.workspace_id, users=self.users(),
                                           title=doc.title)

    def _complete_relations(self, page: dict[str, Any]) -> dict[str, Any]:
        """A page object lists at most 25 related pages (``has_more``); read the rest from the
        page-property endpoint so the rendered row names them all."""
        props = page.get("properties") or {}
        partial = {n: p for n, p in props.items() if p.get("type") == "relation" and p.get("has_more")}
        if not partial:
            return page
        full = dict(props)
        for name, prop in partial.items():
            items = self.api.property_items(page["id"], prop["id"])
            full[name] = {**prop, "relation": [i.get("relation") for i in items if i.get("relation")],
                          "has_more": False}
        return {**page, "properties": full}

    def _tombstone(self, obj: dict[str, Any], reason: str) -> list[Tombstone]:
        """What Notion says of a trashed or moved object, kept by the framework's one rule."""
        return self.ctx.tombstone(tombstone(obj, workspace_id=self.workspace_id, reason=reason))

    # --- fetch by id (webhooks, retried failures) -------------------------------------------------

    def fetch(self, entity_ids: Sequence[str]) -> Iterator[Record | ItemFailed]:
        for target in dict.fromkeys(entity_ids):
            kind, _, ident = target.rpartition(":")
            try:
                yield from self._fetch_one(kind or "any", ident)
            except NotFound:
                yield from self.ctx.tombstone(ident, "deleted")  # gone for good, or unshared: Notion says the same
            except PlatformError as exc:
                yield ItemFailed.of(target, exc)

    def _fetch_one(self, kind: str, ident: str) -> Iterator[Record]:
        if kind == "comments":
            yield from self._comment_threads(ident)
            return
        if kind == "block":
            block = self.api.block(ident)
            page_id = self._page_of_block(block)
            if page_id:
                yield from self._page_records(self.api.page(page_id), force=True)
            return
        if kind == "data_source":
            ds = self.api.data_source(ident)
            if is_trashed(ds):
                yield from self._tombstone(ds, "trashed")
            elif not self.in_scope(ds):
                yield from self._tombstone(ds, "out_of_scope")
            else:
                yield data_source_to_document(ds, workspace_id=self.workspace_id)
            return
        if kind in ("database", "comment", "view", "file_upload"):
            return  # nothing of their own to record (a data source or page event covers them)
        previous = self.ctx.previous(ident)
        if isinstance(previous, Thread):  # a comment discussion: reread its page's or block's comments
            if previous.parent_id:
                yield from self._comment_threads(previous.parent_id, wanted=ident)
            return
        try:
            page = self.api.page(ident)
        except NotFound:
            if kind == "page":
                raise
            yield from self._fetch_one("data_source", ident)
            return
        yield from self._page_records(page, force=True)

    def _page_of_block(self, block: dict[str, Any]) -> str | None:
        cur = block
        for _ in range(10_000):
            kind, pid = page_parent(cur)
            if kind == "page_id":
                return pid
            if kind != "block_id" or not pid:
                return None
            cur = self.api.block(pid)
        return None

    def _comment_threads(self, parent_id: str, wanted: str | None = None) -> Iterator[Record]:
        comments = self.comments(parent_id)
        if not self.config.block_comments:  # block discussions are synced only when asked for
            comments = [c for c in comments if (c.get("parent") or {}).get("type") != "block_id"]
        threads = comments_to_threads(comments, workspace_id=self.workspace_id, users=self.users())
        found = False
        for t in threads:
            found = found or t.entity_id == wanted
            yield t
        if wanted is not None and not found:
            yield from self.ctx.tombstone(wanted, "deleted")  # the discussion was resolved or deleted

    # --- reconcile and containers ------------------------------------------------------------------

    def list_entity_ids(self) -> Iterator[str]:
        for response in self.api.search_pages():
            for obj in response.get("results") or ():
                if is_trashed(obj) or not self.in_scope(obj):
                    continue
                yield obj["id"]
                if obj.get("object") == "page" and self.config.comments:
                    parents = [obj["id"]]
                    if self.config.block_comments:
                        parents += _block_ids(fetch_tree(self.api, obj["id"]))
                    for parent in parents:
                        for c in self.comments(parent):
                            yield str(c.get("discussion_id") or c["id"])

    def containers(self) -> Iterator[Container]:
        for response in self.api.search_pages():
            for obj in response.get("results") or ():
                if obj.get("object") == "page" and not is_trashed(obj):
                    kind, pid = page_parent(obj)
                    yield Container(kind="page", id=obj["id"], title=page_title(obj),
                                    parent=pid if kind == "page_id" else None)

    # --- webhooks ----------------------------------------------------------------------------------

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        """Verify one delivery and say what to refetch.

        The one-time verification request (``{"verification_token": ...}``) cannot be
        authenticated, and its token becomes the key every later delivery is checked with. So the
        *first* one to arrive while ``webhook_state`` is ``awaiting_verification`` is kept (state
        ``awaiting_confirmation``) until the operator confirms it (``engram connections verify
        C``, after Notion accepted it when pasted) or resets it (``--reset``). Later verification
        requests never replace it: each is recorded (time, sender address, whether it carried the
        same token) for ``engram connections show C`` and refused. Until the token is confirmed
        every delivery is refused; after, each must carry ``X-Notion-Signature`` =
        HMAC-SHA256(token, raw body). Refusals raise ``WebhookError`` (answered 401)."""
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise WebhookError(WebhookError.NOT_ACCEPTED, "the delivery body is not JSON") from None
        if isinstance(payload, dict) and is_verification_request(payload):
            return self._verification_request(str(payload["verification_token"]), request)
        state = self.ctx.connection.meta.get(WEBHOOK_STATE)
        if state != "verified":
            raise WebhookError(WebhookError.NOT_ACCEPTED,
                               "deliveries are refused until the operator confirms the verification token "
                               f"(engram connections verify {self.ctx.connection.name})")
        token = self.ctx.secrets.get(WEBHOOK_TOKEN)
        if token is None:
            raise WebhookError(WebhookError.NOT_ACCEPTED, "no verification token stored for this connection yet")
        headers = {k.lower(): v for k, v in request.headers.items()}
        verify_signature(request.body, headers.get(SIGNATURE_HEADER.lower()), token.get_secret_value())
        try:
            delivery = parse_delivery(payload)
        except ValueError as exc:
            raise WebhookError(WebhookError.NOT_ACCEPTED, str(exc)) from None
        ids = [f"{kind}:{ident}" for kind, ident in delivery.targets]
        return WebhookResult(entity_ids=ids, delivery_id=delivery.id)

    def _verification_request(self, token: str, request: WebhookRequest) -> WebhookResult:
        held = self.ctx.secrets.get(WEBHOOK_TOKEN)
        same = held is not None and hmac.compare_digest(held.get_secret_value().encode(), token.encode())
        seen = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from": request.client or "unknown"}

        def change(meta: dict[str, Any]) -> dict[str, Any]:
            # Decided on the stored state, in one write transaction: of two first requests racing,
            # exactly one finds the window open.
            if meta.get(WEBHOOK_STATE) == "awaiting_verification":
                return {WEBHOOK_STATE: "awaiting_confirmation", WEBHOOK_TOKEN_RECEIVED: seen,
                        WEBHOOK_LATER_TOKENS: [], WEBHOOK_LATER_COUNT: 0}
            later = list(meta.get(WEBHOOK_LATER_TOKENS) or [])[-(_KEEP_LATER - 1):]
            return {WEBHOOK_LATER_TOKENS: later + [{**seen, "same_token": same}],
                    WEBHOOK_LATER_COUNT: int(meta.get(WEBHOOK_LATER_COUNT) or 0) + 1}

        if self.ctx.change_meta(change).get(WEBHOOK_STATE) == "awaiting_confirmation":
            self.ctx.secrets.set(WEBHOOK_TOKEN, token)
            self.ctx.log.warning("connection %s: webhook verification token received from %s; deliveries "
                                 "are refused until `engram connections verify %s`", self.ctx.connection.name,
                                 seen["from"], self.ctx.connection.name)
            return WebhookResult()  # 202, nothing to refetch
        self.ctx.log.warning("connection %s: another webhook verification request from %s (%s token) was "
                             "recorded, not used", self.ctx.connection.name, seen["from"],
                             "the same" if same else "a different")
        raise WebhookError(WebhookError.NOT_ACCEPTED,
                           "this connection already holds a verification token; this request was recorded "
                           "for the operator and not used")



def _block_ids(blocks: list[dict[str, Any]]) -> list[str]:
    """Every block id of a fetched tree, in reading order (iteratively)."""
    out: list[str] = []
    stack = list(reversed(blocks))
    while stack:
        b = stack.pop()
        if b.get("id"):
            out.append(str(b["id"]))
        stack.extend(reversed(b.get("children") or []))
    return out


# --- the operator's side of the verification handshake ---------------------------------------------
# (what `engram connections show C --reveal-verification-token` and `engram connections verify C
# [--reset]` run)


def reveal_verification_token(secrets: SecretStore, connection: str) -> str | None:
    """The token Notion's verification request carried, for pasting into Notion's UI; None if no
    request has arrived yet. Show it only when the operator asked for it explicitly."""
    value = secrets.get(connection, WEBHOOK_TOKEN)
    return value.get_secret_value() if value is not None else None


def confirm_webhook_verification(store: EventStore, connection: str,
                                 secrets: SecretStore | None = None) -> list[dict[str, Any]]:
    """The operator pasted the held token into Notion and Notion accepted it: deliveries signed
    with it are accepted from now on, and verification requests stay refused. Returns the later
    verification requests that were recorded (``{"at", "from", "same_token"}``), for the operator
    to look at. ``ConfigError`` when no token is held (nothing has arrived, or it was reset)."""
    conns = Connections(store)
    conn = conns.get(connection)  # ConfigError when there is no such connection
    state = conn.meta.get(WEBHOOK_STATE)
    # Before the state machine had "awaiting_confirmation", a held token sat in the secrets store
    # under "awaiting_verification"; the operator's confirmation vouches for it the same way.
    held = state == "awaiting_confirmation" or (
        state == "awaiting_verification" and secrets is not None and secrets.get(connection, WEBHOOK_TOKEN))
    if state != "verified" and not held:
        raise ConfigError(f"no verification request has reached connection {connection} yet: create the webhook "
                          f"subscription in Notion pointing at <ENGRAM_PUBLIC_URL>/v1/webhooks/{connection}")
    conns.update(connection, meta={WEBHOOK_STATE: "verified"})
    return list(conn.meta.get(WEBHOOK_LATER_TOKENS) or [])


def reset_webhook_verification(store: EventStore, connection: str, secrets: SecretStore) -> None:
    """Forget the held token and accept the next verification request (after the subscription
    was recreated in Notion, or when the held token was not Notion's: press "Resend token")."""
    conns = Connections(store)
    conns.get(connection)
    if secrets.get(connection, WEBHOOK_TOKEN) is not None:
        secrets.delete(connection, WEBHOOK_TOKEN)
    conns.update(connection, meta={WEBHOOK_STATE: "awaiting_verification", WEBHOOK_TOKEN_RECEIVED: None,
                                   WEBHOOK_LATER_TOKENS: [], WEBHOOK_LATER_COUNT: 0})
