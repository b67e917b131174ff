"""The Microsoft 365 connector on the framework's contract (``engram_sdk.connectors.Connector``).

What it reads, per scope kind (``--scope team:ID,channel:TEAM/CHANNEL,notebook:ID,site:ID,drive:ID``
or ``all``):

- ``team`` / ``channel``: channel messages through ``/messages/delta`` (``$top=50``,
  ``$expand=replies``; replies beyond the inlined ones through ``replies@odata.nextLink``) ->
  Threads, Edits (against the last stored thread), Tombstones (``deletedDateTime``). The
  deltaLink is the checkpoint, stored after the whole round; 410 restarts the round.
- ``notebook``: OneNote sections and pages (``$top=100``, nextLink), page HTML -> Documents;
  OneNote has no delta, so pages are polled and only those whose ``lastModifiedDateTime`` moved
  are fetched; a page gone from its section gives a Tombstone. Needs the delegated sign-in.
- ``site``: site pages, polled by ``eTag``; changed ones fetched with ``$expand=canvasLayout``.
- ``drive``: drive delta (``deleted`` facets -> Tombstones; 410 -> a fresh enumeration; deletions
  missed meanwhile are caught by ``engram sync --reconcile``); file text from txt/md/html/docx/pdf.

Change notifications: ``handle_webhook`` does the validation handshake, checks ``clientState``
in constant time, verifies ``validationTokens`` and decrypts rich notifications, then queues the
thread to refetch; lifecycle events queue ``subscription:<id>:renew|recreate`` (done by ``fetch``)
or a resync (``missed``). Each sync creates missing subscriptions and renews those past half
their lifetime, so the scheduled sync is the renewal job.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets as pysecrets
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import msal
from pydantic import BaseModel, Field, SecretStr

from engram_sdk.connectors import (
    Account,
    AuthorizationPending,
    ConfigError,
    Connector,
    Container,
    Document,
    ItemFailed,
    NotFound,
    PlatformError,
    Record,
    Thread,
    Tombstone,
    WebhookError,
    WebhookRequest,
    WebhookResult,
)

from ._client import DEFAULT_GRAPH_URL, GraphClient
from ._errors import ExtractionError, NotificationError
from ._extract import extract_text, extractable
from ._normalize import (
    Origin,
    channel_thread,
    drive_item_record,
    message_edits,
    onenote_page_document,
    parse_graph_time,
    site_page_document,
)
from ._notifications import (
    DecryptionKeys,
    client_state_matches,
    decrypt_content,
    new_encryption_certificate,
    parse_notifications,
    validation_token,
    verify_validation_tokens,
)

__all__ = ["MicrosoftCheckpoint", "MicrosoftConfig", "MicrosoftConnector"]

# Maximum subscription lifetimes (minutes) and how early to renew (microsoft.md §4.1)
_LIFETIME_MIN = {"channel": 4320, "drive": 42300}
_CACHE = "msal_token_cache"
_FLOW = "device_flow"
_AUTH_FLOW = "auth_code_flow"
_VIA = "delegated_via"
_CLIENT_STATE = "client_state"
_NOTIFY_KEY = "notification_private_key"
_JWKS_TTL = 3600.0
_JWKS_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}


class MicrosoftConfig(BaseModel):
    tenant: str = Field(description="Entra tenant id (or domain)")
    client_id: str = Field(description="the app registration's client id")
    client_secret: SecretStr | None = Field(None, description="client secret (app-only access)")
    certificate: str | None = Field(None, description="PEM file with the app's private key and certificate")
    delegated: bool = Field(False, description="also sign in a user (needed for OneNote): device code, or a "
                            "browser sign-in with --redirect-uri")
    redirect_uri: str | None = Field(None, description="sign the user in through the browser (authorization code) "
                                     "and come back to this URI")
    auth_response: SecretStr | None = Field(None, description="the URL the browser was sent back to after signing in")
    authority: str | None = Field(None, description="authority URL (default https://login.microsoftonline.com/TENANT)")
    graph_url: str = Field(DEFAULT_GRAPH_URL, description="Microsoft Graph root")
    ca_bundle: str | None = Field(None, description="CA bundle to trust (a sandbox's test CA)")
    notification_url: str | None = Field(None, description="public https URL of this connection's webhook receiver")
    lifecycle_url: str | None = Field(None, description="lifecycle notification URL (default: notification_url)")
    rich_notifications: bool = Field(False, description="ask Graph for encrypted resource data in notifications")
    jwks_url: str | None = Field(None, description="signing keys of validationTokens "
                                 "(default: the authority host's /common/discovery/v2.0/keys)")
    rate_limits: dict[str, str] = Field(default_factory=dict, description="override limits, e.g. {'channel': '2/s'}")
    messages_page_size: int = Field(50, ge=1, le=50)
    onenote_page_size: int = Field(100, ge=1, le=100)


class MicrosoftCheckpoint(BaseModel):
    channels: dict[str, str] = Field(default_factory=dict, description="'team/channel' -> messages deltaLink")
    drives: dict[str, str] = Field(default_factory=dict, description="drive id -> deltaLink")
    onenote: dict[str, dict[str, str]] = Field(default_factory=dict, description="section -> page -> lastModified")
    sites: dict[str, dict[str, str]] = Field(default_factory=dict, description="site -> page -> eTag")


class MicrosoftConnector(Connector[MicrosoftConfig, MicrosoftCheckpoint]):
    platform = "microsoft"
    Config = MicrosoftConfig
    Checkpoint = MicrosoftCheckpoint
    scope_kinds = ("team", "channel", "notebook", "site", "drive")
    description = "Microsoft 365: Teams channel messages, OneNote pages, SharePoint site pages, drives"
    sandbox = "engram_microsoft.sandbox:MicrosoftSandbox"

    _graph: GraphClient | None = None
    _cache: msal.SerializableTokenCache | None = None

    # --- plumbing ----------------------------------------------------------------------------------

    def _secret(self) -> str | None:
        # `engram connect --client-secret-env VAR` reads the variable and stores the value as this field
        return self.config.client_secret.get_secret_value() if self.config.client_secret is not None else None

    def _certificate(self) -> dict[str, str] | None:
        if not self.config.certificate:
            return None
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        pem = open(self.config.certificate, "rb").read()
        cert = x509.load_pem_x509_certificate(pem)
        return {"private_key": pem.decode(), "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            cache = msal.SerializableTokenCache()
            stored = self.ctx.secrets.get(_CACHE)
            if stored is not None:
                cache.deserialize(stored.get_secret_value())
            self._cache = cache
            self._graph = GraphClient(
                tenant=self.config.tenant,
                client_id=self.config.client_id,
                token_cache=cache,
                save_cache=lambda: self.ctx.secrets.set(_CACHE, cache.serialize()),
                client_secret=self._secret(),
                certificate=self._certificate(),
                delegated=self.config.delegated,
                delegated_via="confidential" if self._delegated_via() == "confidential" else "public",
                authority=self.config.authority,
                graph_url=self.config.graph_url,
                ca_bundle=self.config.ca_bundle,
                clock=self.ctx.clock,
                rates=self.config.rate_limits,
                http=self.ctx.http,
            )
        return self._graph

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()

    def _origin(self, *path: str) -> Origin:
        return Origin(tenant_id=self.config.tenant, observed_at=datetime.now(timezone.utc),
                      path=tuple(p for p in path if p))

    @property
    def _scope(self) -> Any:
        return self.ctx.connection.scope

    # --- check, containers -------------------------------------------------------------------------

    def check(self) -> Account:
        for item in self._scope.ids("channel"):
            if "/" not in item:
                raise ConfigError(f"scope channel:{item} must be written channel:TEAM_ID/CHANNEL_ID")
        if self._scope.ids("notebook") and not self.config.delegated:
            raise ConfigError("OneNote notebooks need a delegated sign-in: add --delegated")
        if self.graph.has_app_credential:
            self.graph.token("app")
        if self.config.delegated and not self.graph.has_delegated_account():
            if self.config.redirect_uri:
                self._browser_login(self.config.redirect_uri)
            else:
                self._device_login()
        return Account(source=f"msgraph://tenant/{self.config.tenant}", name=f"Microsoft 365 tenant {self.config.tenant}",
                       details={"delegated": self.config.delegated, "app_only": self.graph.has_app_credential})

    def _delegated_via(self) -> str:
        stored = self.ctx.secrets.get(_VIA)
        return stored.get_secret_value() if stored is not None else "public"

    def _browser_login(self, redirect_uri: str) -> None:
        """Start an authorization-code login, or finish it with ``--auth-response``."""
        stored = self.ctx.secrets.get(_AUTH_FLOW)
        if stored is not None and self.config.auth_response is not None:
            flow = json.loads(stored.get_secret_value())
            try:
                self.graph.finish_auth_code_flow(flow, self.config.auth_response.get_secret_value())
            finally:
                self.ctx.secrets.delete(_AUTH_FLOW)
                self.ctx.secrets.delete("auth_response")  # one use only
            via = "confidential" if self.graph.has_app_credential else "public"
            self.ctx.secrets.set(_VIA, via)
            self.graph.delegated_via = via  # type: ignore[assignment]
            return
        flow = self.graph.start_auth_code_flow(redirect_uri)
        self.ctx.secrets.set(_AUTH_FLOW, json.dumps(flow))
        raise AuthorizationPending(
            f"To sign in, open this URL in a browser:\n{flow['auth_uri']}\nthen run: engram connect microsoft "
            f"--name {self.ctx.connection.name} --auth-response '<the URL the browser was sent back to>'")

    def _device_login(self) -> None:
        """Start a device-code login, or poll the one started by an earlier ``check``."""
        stored = self.ctx.secrets.get(_FLOW)
        flow = json.loads(stored.get_secret_value()) if stored is not None else None
        if flow is None or flow.get("expires_at", 0) < datetime.now(timezone.utc).timestamp():
            flow = self.graph.start_device_flow()
            self.ctx.secrets.set(_FLOW, json.dumps(flow))
            raise AuthorizationPending(flow["message"])
        try:
            self.graph.poll_device_flow(flow)
        finally:
            self.ctx.secrets.set(_FLOW, json.dumps(flow))  # MSAL notes the attempt time in it
        self.ctx.secrets.delete(_FLOW)

    def containers(self) -> Iterator[Container]:
        for team in self._list("/teams"):
            yield Container("team", team["id"], team.get("displayName") or "")
            for ch in self._channels(team["id"]):
                yield Container("channel", f"{team['id']}/{ch['id']}", ch.get("displayName") or "", parent=f"team:{team['id']}")
        for site in self._list("/sites", params={"search": "*"}):
            yield Container("site", site["id"], site.get("displayName") or "")
        for drive in self._list("/drives"):
            yield Container("drive", drive["id"], drive.get("name") or "")
        if self.config.delegated:
            for nb in self._list("/me/onenote/notebooks", auth="user"):
                yield Container("notebook", nb["id"], nb.get("displayName") or "")

    # --- what is in scope --------------------------------------------------------------------------

    def _channels(self, team: str) -> list[dict[str, Any]]:
        return self._list(f"/teams/{team}/channels", rate_key=f"team:{team}")

    def _list(self, url: str, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item of a collection, across all its pages."""
        return [item for page in self.graph.pages(url, **kwargs) for item in page.get("value", [])]

    def _scoped_channels(self) -> Iterator[tuple[str, str, str, str]]:
        """(team id, channel id, team name, channel name) for every channel in scope."""
        scope = self._scope
        teams = [t["id"] for t in self._list("/teams")] if scope.all else scope.ids("team")
        wanted: dict[str, set[str] | None] = {t: None for t in teams}
        for item in scope.ids("channel"):
            team, sep, channel = item.partition("/")
            if not sep:
                raise ConfigError(f"scope channel:{item} must be written channel:TEAM_ID/CHANNEL_ID")
            if wanted.get(team, set()) is not None:
                wanted.setdefault(team, set()).add(channel)  # type: ignore[union-attr]
        for team, only in wanted.items():
            team_name = self.graph.get_json(f"/teams/{team}", rate_key=f"team:{team}").get("displayName") or ""
            for ch in self._channels(team):
                if only is None or ch["id"] in only:
                    yield team, ch["id"], team_name, ch.get("displayName") or ""

    def _scoped(self, kind: str, listing: str, auth: str = "app") -> list[str]:
        if self._scope.all:
            try:
                return [x["id"] for x in self._list(listing, auth=auth)]
            except NotFound:
                return []
        return self._scope.ids(kind)

    # --- sync --------------------------------------------------------------------------------------

    def sync(self, checkpoint: MicrosoftCheckpoint | None) -> Iterator[Record | MicrosoftCheckpoint | ItemFailed]:
        cp = checkpoint.model_copy(deep=True) if checkpoint else MicrosoftCheckpoint()
        if self._notification_url():
            self.ensure_subscriptions()
        for team, channel, team_name, channel_name in self._scoped_channels():
            yield from self._sync_channel(team, channel, (team_name, channel_name), cp)
        for drive in self._scoped("drive", "/drives"):
            yield from self._sync_drive(drive, cp)
        for site in self._scoped("site", "/sites?search=*"):
            yield from self._sync_site(site, cp)
        if self._scope.ids("notebook") and not self.config.delegated:
            self.ctx.log.warning("notebooks in scope but no delegated sign-in (--delegated): OneNote skipped")
        notebooks = self._scoped("notebook", "/me/onenote/notebooks", auth="user") if (
            self.config.delegated and (self._scope.all or self._scope.ids("notebook"))) else []
        for notebook in notebooks:
            yield from self._sync_notebook(notebook, cp)

    # Teams ----------------------------------------------------------------------------------------

    def _sync_channel(self, team: str, channel: str, path: tuple[str, str], cp: MicrosoftCheckpoint) -> Iterator[Any]:
        key = f"{team}/{channel}"
        rate_key = [f"channel:{key}", f"team:{team}"]
        first = f"/teams/{team}/channels/{quote(channel, safe=':@')}/messages/delta"
        params = {"$top": self.config.messages_page_size, "$expand": "replies"}
        start = cp.channels.get(key)
        for attempt in range(2):
            delta = None
            try:
                pages = self.graph.pages(start or first, params=None if start else params, rate_key=rate_key)
                for page in pages:
                    for msg in page.get("value", []):
                        yield from self._thread(msg, path, rate_key)
                    delta = page.get("@odata.deltaLink")
                break
            except NotFound as exc:
                if exc.status != 410 or attempt:
                    raise
                self.ctx.log.info("channel %s: delta token expired (410); starting a new round", key)
                start = None
        if delta:
            cp.channels[key] = delta
            yield cp.model_copy(deep=True)

    def _thread(self, msg: dict[str, Any], path: tuple[str, ...], rate_key: Any) -> Iterator[Any]:
        origin = self._origin(*path)
        try:
            replies = None
            if msg.get("replies@odata.nextLink"):
                replies = list(msg.get("replies") or [])
                for page in self.graph.pages(msg["replies@odata.nextLink"], rate_key=rate_key):
                    replies.extend(page.get("value", []))
            record = channel_thread(msg, origin, replies)
            if record is None:
                return  # a system message
            if isinstance(record, Tombstone):  # a deleted root: the framework's one deletion rule
                yield from self.ctx.tombstone(record)
                return
            prev = self.ctx.previous(record.entity_id)
            known = {m.id: m.text for m, _ in prev.walk()} if isinstance(prev, Thread) else {}
            yield from message_edits(msg, origin, known, replies)
            yield record
        except (PlatformError, ValueError) as exc:
            yield ItemFailed.of(f"message {msg.get('id')}", exc)

    # drives ---------------------------------------------------------------------------------------

    def _sync_drive(self, drive: str, cp: MicrosoftCheckpoint) -> Iterator[Any]:
        rate_key = f"drive:{drive}"
        first = f"/drives/{drive}/root/delta"
        start = cp.drives.get(drive)
        for attempt in range(2):
            delta = None
            try:
                for page in self.graph.pages(start or first, rate_key=rate_key):
                    for item in page.get("value", []):
                        yield from self._drive_item(drive, item)
                    delta = page.get("@odata.deltaLink")
                break
            except NotFound as exc:
                if exc.status != 410 or attempt:
                    raise
                self.ctx.log.info("drive %s: delta token expired (410); enumerating it again", drive)
                start = None
        if delta:
            cp.drives[drive] = delta
            yield cp.model_copy(deep=True)

    def _drive_item(self, drive: str, item: dict[str, Any]) -> Iterator[Any]:
        entity_id = f"drives/{drive}/items/{item.get('id')}"
        try:
            if "deleted" in item:
                yield from self.ctx.tombstone(entity_id, "deleted")
                return
            if "file" not in item:
                return
            text = None
            mime = (item.get("file") or {}).get("mimeType")
            if extractable(item.get("name"), mime, item.get("size")):
                resp = self.graph.get(f"/drives/{drive}/items/{item['id']}/content", rate_key=f"drive:{drive}",
                                      follow_redirects=True)
                text = extract_text(item.get("name"), mime, resp.content)
            record = drive_item_record(item, self._origin(), drive_id=drive, text=text)
            if record is not None:
                yield from self._with_edit(record)
        except (PlatformError, ExtractionError, ValueError) as exc:
            yield ItemFailed.of(entity_id, exc)

    # SharePoint site pages ------------------------------------------------------------------------

    def _sync_site(self, site: str, cp: MicrosoftCheckpoint) -> Iterator[Any]:
        rate_key = f"site:{site}"
        site_name = self.graph.get_json(f"/sites/{site}", rate_key=rate_key).get("displayName") or ""
        seen: dict[str, str] = {}
        before = cp.sites.get(site, {})
        for page in self.graph.pages(f"/sites/{site}/pages", params={"$top": 100}, rate_key=rate_key):
            for item in page.get("value", []):
                seen[item["id"]] = item.get("eTag") or item.get("lastModifiedDateTime") or ""
                if before.get(item["id"]) == seen[item["id"]]:
                    continue
                yield from self._site_page(site, item["id"], site_name)
        for gone in sorted(set(before) - set(seen)):
            yield from self.ctx.tombstone(f"sites/{site}/pages/{gone}", "deleted")
        cp.sites[site] = seen
        yield cp.model_copy(deep=True)

    def _site_page(self, site: str, page_id: str, site_name: str = "") -> Iterator[Any]:
        entity_id = f"sites/{site}/pages/{page_id}"
        try:
            page = self.graph.get_json(f"/sites/{site}/pages/{page_id}/microsoft.graph.sitePage",
                                       params={"$expand": "canvasLayout"}, rate_key=f"site:{site}")
            yield from self._with_edit(site_page_document(page, self._origin(site_name), site_id=site))
        except NotFound:
            yield from self.ctx.tombstone(entity_id, "deleted")
        except (PlatformError, ValueError) as exc:
            yield ItemFailed.of(entity_id, exc)

    # OneNote ----------------------------------------------------------------------------------------

    def _sync_notebook(self, notebook: str, cp: MicrosoftCheckpoint) -> Iterator[Any]:
        nb = self.graph.get_json(f"/me/onenote/notebooks/{notebook}", auth="user", rate_key="onenote")
        for sec in self._list(f"/me/onenote/notebooks/{notebook}/sections", auth="user", rate_key="onenote"):
            seen: dict[str, str] = {}
            before = cp.onenote.get(sec["id"], {})
            url = f"/me/onenote/sections/{sec['id']}/pages"
            for page in self.graph.pages(url, params={"$top": self.config.onenote_page_size}, auth="user", rate_key="onenote"):
                for item in page.get("value", []):
                    seen[item["id"]] = item.get("lastModifiedDateTime") or ""
                    if before.get(item["id"]) != seen[item["id"]]:
                        yield from self._onenote_page(item, (nb.get("displayName") or "", sec.get("displayName") or ""))
            for gone in sorted(set(before) - set(seen)):
                yield from self.ctx.tombstone(f"onenote/pages/{gone}", "deleted")
            cp.onenote[sec["id"]] = seen
            yield cp.model_copy(deep=True)

    def _onenote_page(self, item: dict[str, Any], path: tuple[str, ...]) -> Iterator[Any]:
        entity_id = f"onenote/pages/{item['id']}"
        try:
            html = self.graph.get(f"/me/onenote/pages/{item['id']}/content", auth="user", rate_key="onenote").text
            yield from self._with_edit(onenote_page_document(item, self._origin(*path), html=html))
        except NotFound:
            yield from self.ctx.tombstone(entity_id, "deleted")
        except (PlatformError, ValueError) as exc:
            yield ItemFailed.of(entity_id, exc)

    # shared -------------------------------------------------------------------------------------------

    def _with_edit(self, doc: Document) -> Iterator[Record]:
        """The document, preceded by an Edit when its text changed since the last stored version."""
        edit = self.ctx.edit(doc)
        if edit is not None:
            yield edit
        yield doc


    # --- fetch, reconcile ------------------------------------------------------------------------

    def fetch(self, entity_ids: Sequence[str]) -> Iterator[Record | ItemFailed]:
        for entity_id in entity_ids:
            parts = entity_id.split("/")
            try:
                if entity_id.startswith("subscription:"):
                    self._lifecycle_job(entity_id)
                elif parts[0] == "teams" and len(parts) == 6:
                    yield from self._fetch_thread(parts[1], parts[3], parts[5])
                elif parts[0] == "drives" and len(parts) == 4:
                    yield from self._fetch_drive_item(parts[1], parts[3])
                elif parts[0] == "sites" and len(parts) == 4:
                    if self._scope.contains("site", parts[1]):
                        yield from self._site_page(parts[1], parts[3])
                    else:
                        yield from self.ctx.tombstone(entity_id, "out_of_scope")
                elif parts[0] == "onenote" and len(parts) == 3:
                    yield from self._fetch_onenote(parts[2])
                else:
                    yield ItemFailed(entity_id, "not an entity id of the microsoft connector")
            except (PlatformError, ValueError) as exc:
                yield ItemFailed.of(entity_id, exc)

    def _channel_in_scope(self, team: str, channel: str) -> bool:
        s = self._scope
        return s.all or s.contains("team", team) or s.contains("channel", f"{team}/{channel}")

    def _fetch_thread(self, team: str, channel: str, message: str) -> Iterator[Any]:
        entity_id = f"teams/{team}/channels/{channel}/messages/{message}"
        if not self._channel_in_scope(team, channel):
            yield from self.ctx.tombstone(entity_id, "out_of_scope")
            return
        rate_key = [f"channel:{team}/{channel}", f"team:{team}"]
        try:
            msg = self.graph.get_json(f"/teams/{team}/channels/{quote(channel, safe=':@')}/messages/{message}",
                                      params={"$expand": "replies"}, rate_key=rate_key)
        except NotFound:
            yield from self.ctx.tombstone(entity_id, "deleted")
            return
        prev = self.ctx.previous(entity_id)
        path = tuple(prev.path) if prev is not None else ()
        yield from self._thread(msg, path, rate_key)

    def _fetch_drive_item(self, drive: str, item_id: str) -> Iterator[Any]:
        entity_id = f"drives/{drive}/items/{item_id}"
        if not self._scope.contains("drive", drive):
            yield from self.ctx.tombstone(entity_id, "out_of_scope")
            return
        try:
            item = self.graph.get_json(f"/drives/{drive}/items/{item_id}", rate_key=f"drive:{drive}")
        except NotFound:
            yield from self.ctx.tombstone(entity_id, "deleted")
            return
        yield from self._drive_item(drive, item)

    def _fetch_onenote(self, page_id: str) -> Iterator[Any]:
        try:
            item = self.graph.get_json(f"/me/onenote/pages/{page_id}", auth="user", rate_key="onenote")
        except NotFound:
            yield from self.ctx.tombstone(f"onenote/pages/{page_id}", "deleted")
            return
        prev = self.ctx.previous(f"onenote/pages/{page_id}")
        yield from self._onenote_page(item, tuple(prev.path) if prev is not None else ())

    def list_entity_ids(self) -> Iterator[str]:
        """Everything in scope now (for ``--reconcile``): thread roots, drive files, site pages, notes."""
        for team, channel, _tn, _cn in self._scoped_channels():
            url = f"/teams/{team}/channels/{quote(channel, safe=':@')}/messages/delta"
            for page in self.graph.pages(url, params={"$top": 50}, rate_key=[f"channel:{team}/{channel}", f"team:{team}"]):
                for m in page.get("value", []):
                    if not m.get("deletedDateTime") and m.get("messageType", "message") == "message":
                        yield f"teams/{team}/channels/{channel}/messages/{m['id']}"
        for drive in self._scoped("drive", "/drives"):
            for page in self.graph.pages(f"/drives/{drive}/root/delta", rate_key=f"drive:{drive}"):
                yield from (f"drives/{drive}/items/{i['id']}" for i in page.get("value", []) if "file" in i and "deleted" not in i)
        for site in self._scoped("site", "/sites?search=*"):
            for page in self.graph.pages(f"/sites/{site}/pages", params={"$top": 100}, rate_key=f"site:{site}"):
                yield from (f"sites/{site}/pages/{p['id']}" for p in page.get("value", []))
        if self.config.delegated:
            for notebook in self._scoped("notebook", "/me/onenote/notebooks", auth="user"):
                for sec in self._list(f"/me/onenote/notebooks/{notebook}/sections", auth="user", rate_key="onenote"):
                    for page in self.graph.pages(f"/me/onenote/sections/{sec['id']}/pages", params={"$top": 100},
                                                 auth="user", rate_key="onenote"):
                        yield from (f"onenote/pages/{p['id']}" for p in page.get("value", []))

    # --- change notifications -------------------------------------------------------------------

    def _subscriptions(self) -> dict[str, dict[str, Any]]:
        subs = self.ctx._meta_updates.get("subscriptions")
        if subs is None:
            subs = json.loads(json.dumps(self.ctx.connection.meta.get("subscriptions") or {}))
        return subs

    def _client_state(self) -> str:
        value = self.ctx.secrets.get(_CLIENT_STATE)
        if value is None:
            state = pysecrets.token_urlsafe(32)
            self.ctx.secrets.set(_CLIENT_STATE, state)
            return state
        return value.get_secret_value()

    def _wanted_subscriptions(self) -> dict[str, str]:
        """resource -> kind for every resource in scope that supports subscriptions."""
        out = {f"/teams/{t}/channels/{c}/messages": "channel" for t, c, _tn, _cn in self._scoped_channels()}
        out.update({f"/drives/{d}/root": "drive" for d in self._scoped("drive", "/drives")})
        return out

    def ensure_subscriptions(self, *, now: datetime | None = None) -> dict[str, dict[str, Any]]:
        """Create missing subscriptions and renew those past half their lifetime."""
        now = now or datetime.now(timezone.utc)
        subs = self._subscriptions()
        by_resource = {s["resource"]: sid for sid, s in subs.items()}
        for resource, kind in self._wanted_subscriptions().items():
            sid = by_resource.get(resource)
            if sid is None:
                sid, sub = self._create_subscription(resource, kind, now)
                subs[sid] = sub
                continue
            expires = parse_graph_time(subs[sid]["expires"]) or now
            if expires - now < timedelta(minutes=_LIFETIME_MIN[kind] / 2):
                self._renew(sid, subs, now)
        self.ctx.set_meta(subscriptions=subs)
        return subs

    def _notification_url(self) -> str | None:
        """The configured URL, else the server's public base URL (ENGRAM_PUBLIC_URL) plus the route
        `engram serve` receives this connection's deliveries on."""
        if self.config.notification_url:
            return self.config.notification_url
        public = os.environ.get("ENGRAM_PUBLIC_URL", "").rstrip("/")
        return f"{public}/v1/webhooks/{self.ctx.connection.name}" if public else None

    def _expiry(self, kind: str, now: datetime) -> str:
        when = now + timedelta(minutes=_LIFETIME_MIN[kind] - 5)
        return when.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

    def _create_subscription(self, resource: str, kind: str, now: datetime) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "changeType": "created,updated,deleted" if kind == "channel" else "updated",
            "notificationUrl": self._notification_url(),
            "resource": resource,
            "expirationDateTime": self._expiry(kind, now),
            "clientState": self._client_state(),
        }
        if kind == "channel":
            body["lifecycleNotificationUrl"] = self.config.lifecycle_url or self._notification_url()
            if self.config.rich_notifications:
                cert_b64, _ = self._notification_certificate()
                body.update(includeResourceData=True, encryptionCertificate=cert_b64,
                            encryptionCertificateId=self._certificate_id())
        created = self.graph.request("POST", "/subscriptions", json=body).json()
        return created["id"], {"resource": resource, "kind": kind, "expires": created["expirationDateTime"]}

    def _renew(self, sid: str, subs: dict[str, dict[str, Any]], now: datetime) -> None:
        sub = subs[sid]
        try:
            renewed = self.graph.request("PATCH", f"/subscriptions/{sid}", json={"expirationDateTime": self._expiry(sub["kind"], now)}).json()
            sub["expires"] = renewed["expirationDateTime"]
        except NotFound:  # expired or removed meanwhile: create it again
            del subs[sid]
            new_id, new = self._create_subscription(sub["resource"], sub["kind"], now)
            subs[new_id] = new

    def delete_subscriptions(self) -> int:
        subs = self._subscriptions()
        for sid in list(subs):
            try:
                self.graph.request("DELETE", f"/subscriptions/{sid}")
            except NotFound:
                pass
            del subs[sid]
        self.ctx.set_meta(subscriptions=subs)
        return len(subs)

    def _lifecycle_job(self, job: str) -> None:
        _, sid, action = job.split(":", 2)
        subs = self._subscriptions()
        now = datetime.now(timezone.utc)
        if sid in subs:
            if action == "renew":
                self._renew(sid, subs, now)
            elif action == "recreate":
                sub = subs.pop(sid)
                new_id, new = self._create_subscription(sub["resource"], sub["kind"], now)
                subs[new_id] = new
        self.ctx.set_meta(subscriptions=subs)

    def _certificate_id(self) -> str:
        return f"engram-{self.ctx.connection.name}"

    def _notification_certificate(self) -> tuple[str, bytes]:
        stored = self.ctx.secrets.get(_NOTIFY_KEY)
        if stored is not None:
            data = json.loads(stored.get_secret_value())
            return data["certificate"], data["private_key"].encode()
        cert_b64, pem = new_encryption_certificate(f"engram-{self.ctx.connection.name}")
        self.ctx.secrets.set(_NOTIFY_KEY, json.dumps({"certificate": cert_b64, "private_key": pem.decode()}))
        return cert_b64, pem

    def _jwks(self, *, refresh: bool = False) -> dict[str, Any]:
        """The signing keys of validationTokens, cached for an hour per URL (keys rotate daily)."""
        url = self.config.jwks_url or f"{(self.config.authority or 'https://login.microsoftonline.com').rsplit('/', 1)[0]}/common/discovery/v2.0/keys"
        cached = _JWKS_CACHE.get(url)
        if not refresh and cached is not None and time.monotonic() - cached[0] < _JWKS_TTL:
            return cached[1]
        verify: Any = ssl.create_default_context(cafile=self.config.ca_bundle) if self.config.ca_bundle else True
        with httpx.Client(verify=verify, timeout=10) as c:
            r = c.get(url)
            r.raise_for_status()
            keys = r.json()
        _JWKS_CACHE[url] = (time.monotonic(), keys)
        return keys

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        try:
            token = validation_token(request.query)
        except NotificationError as exc:
            raise WebhookError(WebhookError.NOT_ACCEPTED, str(exc)) from None
        if token is not None:
            return WebhookResult(status=200, body=token, media_type="text/plain")
        try:
            batch = parse_notifications(request.body)
        except NotificationError as exc:
            raise WebhookError(WebhookError.NOT_ACCEPTED, str(exc)) from None
        expected = self._client_state()
        for n in batch.notifications:  # the cheap check first, on every item
            if not client_state_matches(expected, n.client_state):
                raise WebhookError(WebhookError.NO_MATCH, "clientState does not match this connection's")
        rich = [n for n in batch.notifications if n.encrypted_content]
        if rich:
            try:
                check = dict(app_id=self.config.client_id, tenant_ids={self.config.tenant})
                try:
                    verify_validation_tokens(batch.validation_tokens, self._jwks(), **check)  # type: ignore[arg-type]
                except NotificationError:  # the cached keys may have rotated: fetch them once more
                    verify_validation_tokens(batch.validation_tokens, self._jwks(refresh=True), **check)  # type: ignore[arg-type]
                keys = DecryptionKeys()
                keys.add_pem(self._certificate_id(), self._notification_certificate()[1])
                for n in rich:
                    decrypt_content(n.encrypted_content or {}, keys)
            except NotificationError as exc:
                raise WebhookError(WebhookError.NOT_ACCEPTED, f"{exc.reason}: {exc}") from None
            except httpx.HTTPError as exc:
                raise WebhookError(WebhookError.NOT_ACCEPTED, f"signing keys unavailable ({type(exc).__name__})") from None
        # Subscriptions are not filtered by id: one recreated by the worker may not be in this
        # connection's meta yet, and the clientState (a per-connection secret) already vouches.
        ids: list[str] = []
        resync = False
        for n in batch.notifications:
            if n.lifecycle_event == "reauthorizationRequired":
                ids.append(f"subscription:{n.subscription_id}:renew")
            elif n.lifecycle_event == "subscriptionRemoved":
                ids.append(f"subscription:{n.subscription_id}:recreate")
            elif n.lifecycle_event == "missed":
                resync = True
            elif n.ref is not None and n.ref.kind == "channel_message" and n.ref.entity_id:
                ids.append(n.ref.entity_id)
            elif n.ref is not None and n.ref.kind in ("drive", "drive_item"):
                resync = True  # a drive says "something changed": its delta finds what
        digest = hashlib.sha256(request.body).hexdigest()
        return WebhookResult(entity_ids=list(dict.fromkeys(ids)), resync=resync, delivery_id=f"graph-{digest[:32]}",
                             status=202)
