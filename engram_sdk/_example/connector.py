"""The example connector: a complete connector for the example notes platform in ~150 lines.

It is what ``docs/writing-a-connector.md`` walks through, and what the framework's own tests and
the connector test kit run against (with ``ExampleSandbox``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from .._connector import Account, Connector, Container, ItemFailed, Record, WebhookRequest, WebhookResult
from .._exceptions import AuthError, NotFound, PlatformError, ReconnectNeeded, WebhookError
from .._http import Rate, RateLimiter, RetryPolicy, build_client, platform_errors, raise_for_status
from .._records import Document, Person
from .._webhooks import StandardWebhook

__all__ = ["ExampleCheckpoint", "ExampleConfig", "ExampleConnector"]


class ExampleConfig(BaseModel):
    base_url: str = Field(description="API root, e.g. http://127.0.0.1:8080 for the sandbox")
    token: SecretStr = Field(description="API token")
    webhook_secret: SecretStr | None = Field(None, description="whsec_ secret that signs webhook deliveries")
    requests_per_second: float = Field(10.0, gt=0, description="client-side rate limit")
    page_size: int = Field(50, ge=1, le=100, description="changes per page (one checkpoint per page)")
    retry_budget: float = Field(300.0, gt=0, description="seconds one request may spend waiting out "
                                                          "429/5xx/timeouts before the sync stops")


class ExampleCheckpoint(BaseModel):
    after: int = 0  # the last change-log sequence number fully stored


class ExampleConnector(Connector[ExampleConfig, ExampleCheckpoint]):
    platform = "example"
    Config = ExampleConfig
    Checkpoint = ExampleCheckpoint
    scope_kinds = ("folder",)
    description = "The example notes platform (see docs/writing-a-connector.md)"
    sandbox = "engram_sdk._example.sandbox:ExampleSandbox"

    _client: httpx.Client | None = None
    _workspace: str | None = None

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            limiter = RateLimiter({"default": Rate(self.config.requests_per_second)}, clock=self.ctx.clock)
            self._client = build_client(
                self.config.base_url,
                headers={"Authorization": f"Bearer {self.config.token.get_secret_value()}"},
                limiter=limiter, clock=self.ctx.clock, retry=RetryPolicy(budget=self.config.retry_budget),
                **self.ctx.http,
            )
        return self._client

    def _get(self, path: str, **params: Any) -> Any:
        with platform_errors(f"GET {path}"):
            response = self.client.get(path, params=params)
        try:
            raise_for_status(response)
        except AuthError:
            raise ReconnectNeeded("the example platform rejected the token (revoked or expired)") from None
        return response.json()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _in_scope(self, folder: str) -> bool:
        return self.ctx.connection.scope.contains("folder", folder)

    def _workspace_id(self) -> str:
        if self._workspace is None:
            self._workspace = self._get("/api/me")["workspace"]["id"]
        return self._workspace

    # --- the contract ------------------------------------------------------------------------------

    def check(self) -> Account:
        ws = self._get("/api/me")["workspace"]
        return Account(source=f"example://workspace/{ws['id']}", name=ws["name"])

    def containers(self) -> Iterator[Container]:
        for f in self._get("/api/folders")["folders"]:
            yield Container("folder", f["id"], f["title"])

    def sync(self, checkpoint: ExampleCheckpoint | None) -> Iterator[Record | ExampleCheckpoint | ItemFailed]:
        after = checkpoint.after if checkpoint else 0
        while True:
            page = self._get("/api/changes", after=after, limit=self.config.page_size)
            for change in page["changes"]:
                if change["op"] == "delete":
                    yield from self.ctx.tombstone(change["id"], "deleted")  # if it was stored
                else:
                    yield from self.fetch([change["id"]])
            after = page["next_after"]
            yield ExampleCheckpoint(after=after)  # everything up to `after` is yielded
            if not page["has_more"]:
                return

    def fetch(self, entity_ids: Sequence[str]) -> Iterator[Record | ItemFailed]:
        for note_id in entity_ids:
            try:
                note = self._get(f"/api/notes/{note_id}")
            except NotFound:
                yield from self.ctx.tombstone(note_id, "deleted")
                continue
            except PlatformError as exc:  # this note only: report it and go on
                yield ItemFailed.of(note_id, exc)
                continue
            if not self._in_scope(note["folder"]):
                yield from self.ctx.tombstone(note_id, "out_of_scope")
                continue
            doc = self._document(note)
            edit = self.ctx.edit(doc)  # the change from the stored version, if any
            if edit is not None:
                yield edit
            yield doc

    def list_entity_ids(self) -> Iterator[str]:
        cursor = None
        while True:
            page = self._get("/api/notes", **({"cursor": cursor} if cursor else {}), limit=100)
            yield from (n["id"] for n in page["notes"] if self._in_scope(n["folder"]))
            cursor = page["next_cursor"]
            if not cursor:
                return

    def handle_webhook(self, request: WebhookRequest) -> WebhookResult:
        secret = self.ctx.secrets.require("webhook_secret")
        delivery_id = StandardWebhook(secret).verify(request.headers, request.body)
        try:
            payload = request.json()
        except ValueError:
            payload = None
        # Verified is not well-formed: a signed body the connector cannot read is refused, not a 500.
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
            raise WebhookError(WebhookError.NOT_ACCEPTED, "the delivery names no note id")
        return WebhookResult(entity_ids=[payload["id"]], delivery_id=delivery_id)

    # --- normalizing (pure) ------------------------------------------------------------------------

    def _document(self, note: dict[str, Any]) -> Document:
        return Document(
            platform="example", workspace_id=self._workspace_id(), entity_id=note["id"],
            parent_id=note["folder"], title=note["title"], text=note["text"],
            authors=[Person(id=note["author"])], updated_at=datetime.fromisoformat(note["updated_at"]),
            revision=str(note["seq"]), doc_type="note",
        )
