"""The Harvey connector on the framework's contract: poll-only, incremental, scope-filtered.

One ``sync`` reads four streams, each on its own so a 403 on one (the token lacks that
permission) is logged and skipped while the others go on:

1. **client matters** (to resolve ``matter:`` scope items by id or name; no records);
2. **Vault**: each project in scope -> a metadata Document; its files (cursor pages) -> metadata
   Documents, a replacement upserting its chain; files and projects gone since the last sync ->
   Tombstones (``get_files`` says ``deleted_at`` / ``not_found``); review-table rows -> Edits;
3. **query history** in one-day windows from the checkpoint (re-reading a day of overlap) -> one
   Thread per query tied to the scope, de-duplicated by ``unique_usage_id``;
4. **audit logs** (``from`` exclusive, ``take`` <= 1000) -> appended to a JSON Lines file for the
   operator (``audit_dir``); never records, never trained on.

A checkpoint is yielded after each project, each history window and each audit page.
Confidentiality: no log line, error message or ``ItemFailed`` reason carries query or answer
text; they name streams, ids and counts only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError

from engram_sdk import Settings
from engram_sdk.connectors import (
    Account,
    AuthError,
    Connector,
    ConnectorContext,
    ConnectorError,
    Container,
    ItemFailed,
    PermissionDenied,
    Record,
)

from ._assumptions import ASSUMPTIONS, AUDIT_MAX_TAKE, HISTORY_LOOKBACK_DAYS, HISTORY_OVERLAP_SECONDS, WHOAMI_ORG_FIELDS
from ._client import HarveyClient, harvey_limiter
from ._normalize import (
    CellMemory,
    chain_id,
    file_document,
    file_tombstone,
    parse_time,
    project_access,
    project_document,
    query_digest,
    query_thread,
    review_row_edits,
    usage_id,
)
from ._scope import HarveyScope
from ._windows import UsageDeduplicator, history_windows

__all__ = ["HarveyCheckpoint", "HarveyConfig", "HarveyConnector"]

STREAM_ORDER = ("client_matters", "vault", "history", "audit")


class HarveyConfig(BaseModel):
    """``engram connect harvey --token ... --region eu [--base-url URL]``."""

    token: SecretStr = Field(description="a Harvey API token (Settings -> API Tokens)")
    region: Literal["us", "eu", "au"] = Field("us", description="the organisation's region: us, eu or au")
    base_url: str | None = Field(None, description="override the regional host (a sandbox, a proxy)")
    lookback_days: int = Field(
        HISTORY_LOOKBACK_DAYS, ge=1, le=HISTORY_LOOKBACK_DAYS, description="how far back the first sync reads history"
    )
    private: bool = Field(
        False,
        description="mark queries restricted to their asker and Vault content to the people it is shared "
        "with, as Harvey shows them (the trainer then leaves them out unless allow_restricted); by default "
        "the scope's matters and projects are the access boundary",
    )
    rate_limits: dict[str, int] = Field(
        default_factory=dict, description="override Harvey's per-minute limits by category, e.g. {'vault': 600} "
        "(a sandbox with demo-sized budgets); the defaults are Harvey's documented ones"
    )
    audit_dir: str | None = Field(
        None, description="where audit logs are kept for the operator (default ENGRAM_HOME/audit/harvey)"
    )


class FileSeen(BaseModel):
    file_id: str  # the chain's current file
    project_id: str
    replaces: str | None = None  # the file it replaced, as first recorded (keeps re-syncs identical)


class HarveyCheckpoint(BaseModel):
    """Everything an incremental sync needs; secrets and query text are never in it."""

    history_until: int | None = None  # epoch s: history read up to here
    history_seen: dict[str, list[Any]] = Field(default_factory=dict)  # usage id -> [digest, epoch]
    projects: list[str] = Field(default_factory=list)  # project ids in scope seen last time
    files: dict[str, FileSeen] = Field(default_factory=dict)  # chain entity id -> current file
    cells: dict[str, list[Any]] = Field(default_factory=dict)  # review cells: key -> [value, edited, verified]
    audit_last_id: str | None = None
    audit_seeded: bool = False
    streams: dict[str, str] = Field(default_factory=dict)  # stream -> "ok" | "forbidden"


def _invalid(exc: ValidationError) -> str:
    """A normalizer failure, named by field location and count: pydantic's own text quotes input."""
    where = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})[:5]
    return f"invalid record ({exc.error_count()} error(s) at {', '.join(where) or 'record'})"


class HarveyConnector(Connector[HarveyConfig, HarveyCheckpoint]):
    platform = "harvey"
    Config = HarveyConfig
    Checkpoint = HarveyCheckpoint
    scope_kinds = ("project", "matter", "user")
    description = "Harvey (harvey.ai): query history, Vault projects/files and review-table edits; poll-only"
    sandbox = "engram_harvey.sandbox:HarveySandbox"

    def __init__(self, config: HarveyConfig, ctx: ConnectorContext):
        super().__init__(config, ctx)
        self._client: HarveyClient | None = None
        scope = ctx.connection.scope
        self.scope = HarveyScope(
            everything=scope.all,
            projects=frozenset(scope.ids("project")),
            matters=frozenset(scope.ids("matter")),
            users=frozenset(u.lower() for u in scope.ids("user")),
        )

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def client(self) -> HarveyClient:
        if self._client is None:
            self._client = HarveyClient(
                self.config.token.get_secret_value(),
                region=self.config.region,
                base_url=self.config.base_url,
                clock=self.ctx.clock,
                verify=self.ctx.http.get("verify", True),
                limiter=harvey_limiter(self.ctx.clock, self.config.rate_limits) if self.config.rate_limits else None,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @staticmethod
    def now() -> int:
        """Wall-clock time in epoch seconds (history windows are absolute UTC times)."""
        return int(time.time())

    def _org_id(self) -> str:
        source = self.ctx.connection.source or ""
        return source.rsplit("/", 1)[-1] if source.startswith("harvey://org/") else "unknown"

    # --- check / containers ------------------------------------------------------------------------

    def check(self) -> Account:
        """``GET /api/whoami``, then one cheap request per stream: which may this token read?"""
        who = self.client.whoami()
        org = next((str(who[k]) for k in WHOAMI_ORG_FIELDS if who.get(k)), None)
        details: dict[str, Any] = {"service_user": who.get("email") or who.get("user"), "region": self.config.region}
        if org is None:
            org = "token-" + str(who.get("id") or who.get("email") or "unknown")
            details["org_id_assumed"] = "whoami named no organisation; the service user stands in for it"
        details["streams"] = self.client.probe(now=self.now())
        self.ctx.set_meta(streams=dict(details["streams"]), service_user=details["service_user"])
        for stream, state in details["streams"].items():
            if state != "ok":
                self.ctx.log.warning("harvey: this token may not read the %s stream (%s)", stream, state)
        details["assumptions"] = dict(ASSUMPTIONS)
        name = str(who.get("organization_name") or who.get("org_name") or org)
        return Account(source=f"harvey://org/{org}", name=name, details=details)

    def containers(self) -> Iterator[Container]:
        for p in self.client.projects():
            yield Container("project", str(p["id"]), str(p.get("name") or ""))
        for m in self.client.client_matters():
            if not m.get("deleted_at"):
                yield Container("matter", str(m.get("id")), str(m.get("name") or ""))

    # --- sync --------------------------------------------------------------------------------------

    def sync(self, checkpoint: HarveyCheckpoint | None) -> Iterator[Record | HarveyCheckpoint | ItemFailed]:
        cp = checkpoint.model_copy(deep=True) if checkpoint is not None else HarveyCheckpoint()
        org = self._org_id()
        now = self.now()
        found: dict[str, Any] = {"matters": [], "projects": [], "project_files": {}}
        errors: list[ConnectorError] = []
        streams = {
            "client_matters": lambda: self._matters(found),
            "vault": lambda: self._vault(cp, org, found),
            "history": lambda: self._history(cp, org, now, found),
            "audit": lambda: self._audit(cp, now),
        }
        for stream in STREAM_ORDER:
            try:
                yield from streams[stream]()
                cp.streams[stream] = "ok"
            except PermissionDenied:
                cp.streams[stream] = "forbidden"
                self.ctx.log.warning("harvey: the token may not read the %s stream (HTTP 403); skipped", stream)
            except AuthError:
                raise
            except ConnectorError as exc:
                cp.streams[stream] = "error"
                self.ctx.log.warning("harvey: the %s stream failed: %s", stream, exc)
                errors.append(exc)
            yield cp.model_copy(deep=True)
        self.ctx.set_meta(streams=dict(cp.streams))
        if errors:
            raise errors[0]

    # client matters -----------------------------------------------------------------------------------

    def _matters(self, found: dict[str, Any]) -> Iterator[Record]:
        if self.scope.everything or not self.scope.matters:
            return
        found["matters"] = self.client.client_matters()
        yield from ()

    # vault ------------------------------------------------------------------------------------------

    def _vault(self, cp: HarveyCheckpoint, org: str, found: dict[str, Any]) -> Iterator[Record | HarveyCheckpoint | ItemFailed]:
        now_dt = datetime.fromtimestamp(self.now(), timezone.utc)
        memory = CellMemory(cp.cells)
        projects = list(self.client.projects())
        found["projects"] = projects
        listed = set()
        for project in projects:
            pid = str(project.get("id"))
            if not self.scope.wants_project(pid):
                continue
            listed.add(pid)
            try:
                yield project_document(project, org_id=org, now=now_dt, private=self.config.private)
            except ValidationError as exc:
                yield ItemFailed(pid, _invalid(exc))
            files = list(self.client.files(pid))
            found["project_files"][pid] = [str(f.get("id")) for f in files]
            yield from self._files(cp, org, project, files, now_dt)
            yield from self._review_tables(cp, org, project, files, memory, now_dt)
            cp.cells = memory.state()
            if pid not in cp.projects:
                cp.projects.append(pid)
            yield cp.model_copy(deep=True)
        existing = {str(p.get("id")) for p in projects}
        for pid in [p for p in cp.projects if p not in listed]:
            # in scope last time: now out of it (the scope changed), or deleted / no longer shared
            reason = "out_of_scope" if pid in existing else "deleted"
            yield from self.ctx.tombstone(pid, reason)  # only for what this team stored
            for entity, seen in list(cp.files.items()):
                if seen.project_id == pid:
                    yield from self.ctx.tombstone(entity, reason)
                    del cp.files[entity]
            cp.projects.remove(pid)
            yield cp.model_copy(deep=True)

    def _files(self, cp: HarveyCheckpoint, org: str, project: dict[str, Any], files: list[dict[str, Any]],
               now_dt: datetime) -> Iterator[Record | ItemFailed]:
        pid = str(project["id"])
        current: dict[str, str] = {}
        for f in sorted(files, key=lambda f: (str(f.get("uploaded_at") or ""), str(f.get("id")))):
            entity, fid = chain_id(f), str(f.get("id"))
            seen = cp.files.get(entity)
            if seen is None:
                replaces = None  # first sighting: a replacement names its chain's root
            elif seen.file_id == fid:
                replaces = seen.replaces
            else:
                replaces = seen.file_id
            try:
                yield file_document(f, project=project, org_id=org, now=now_dt, replaces=replaces,
                                    private=self.config.private)
            except ValidationError as exc:
                yield ItemFailed(entity, _invalid(exc))
                continue
            cp.files[entity] = FileSeen(file_id=fid, project_id=pid, replaces=replaces)
            current[entity] = fid
        missing = {e: s for e, s in cp.files.items() if s.project_id == pid and e not in current}
        if not missing:
            return
        details = {str(d.get("file_id")): d for d in self.client.file_details([s.file_id for s in missing.values()])}
        for entity, seen in missing.items():
            detail = details.get(seen.file_id, {"error": "not_found"})
            tomb = file_tombstone(detail, entity_id=entity, project_id=pid, org_id=org, now=now_dt)
            if tomb is not None:
                yield from self.ctx.tombstone(tomb)
                del cp.files[entity]

    def _review_tables(self, cp: HarveyCheckpoint, org: str, project: dict[str, Any], files: list[dict[str, Any]],
                       memory: CellMemory, now_dt: datetime) -> Iterator[Record | ItemFailed]:
        pid = str(project["id"])
        names = {str(f.get("id")): str(f.get("name") or "") for f in files}
        visible, harvey_restricted = project_access(project)
        restricted = self.config.private and harvey_restricted
        meta = self.client.project_metadata(pid)
        for table_id in meta.get("review_table_ids") or []:
            table = self.client.review_table(str(table_id))
            table.setdefault("id", table_id)
            for file_id in table.get("file_ids") or []:
                row = self.client.review_row(str(table_id), str(file_id))
                before = dict(memory.cells)
                try:
                    edits = review_row_edits(row, table=table, memory=memory, org_id=org, now=now_dt,
                                             project_name=project.get("name"), file_name=names.get(str(file_id)),
                                             visible_to=visible, restricted=restricted)
                except ValidationError as exc:
                    memory.cells.clear()
                    memory.cells.update(before)  # seen again next time, so no edit is lost
                    yield ItemFailed(f"{table_id}/{file_id}", _invalid(exc))
                    continue
                yield from edits

    # history ----------------------------------------------------------------------------------------

    def _history(self, cp: HarveyCheckpoint, org: str, now: int,
                 found: dict[str, Any]) -> Iterator[Record | HarveyCheckpoint | ItemFailed]:
        scope = self.scope.resolve(found["projects"], found["matters"], found["project_files"])
        if self.scope.projects and not found["projects"]:
            self.ctx.log.warning("harvey: no Vault project could be listed, so queries are matched to the "
                                 "scope's projects by nothing; matters and users still apply")
        if cp.history_until is None:
            since = now - self.config.lookback_days * 86_400
        else:
            since = cp.history_until - HISTORY_OVERLAP_SECONDS
        dedup = UsageDeduplicator(cp.history_seen)
        kept = skipped = 0
        for window in history_windows(since, now, now=now, lookback_days=self.config.lookback_days):
            for event in self.client.query_history(window):
                key = usage_id(event)
                if key is None or not scope.admits(event):
                    skipped += 1
                    continue
                at = parse_time(event.get("utc_time"))
                if not dedup.admit(key, query_digest(event), int(at.timestamp()) if at else window.start):
                    continue
                try:
                    thread = query_thread(event, org_id=org, private=self.config.private)
                except ValidationError as exc:
                    yield ItemFailed(key, _invalid(exc))
                    continue
                if thread is not None:
                    kept += 1
                    yield thread
                elif event.get("query"):
                    yield ItemFailed(key, "query history event without a readable utc_time")
            dedup.prune(window.end - HISTORY_OVERLAP_SECONDS)
            cp.history_until = window.end
            cp.history_seen = dedup.state()
            yield cp.model_copy(deep=True)
        self.ctx.log.info("harvey: history: %d queries in scope, %d outside it, %d repeats skipped",
                          kept, skipped, dedup.skipped)

    # audit ------------------------------------------------------------------------------------------

    def _audit_path(self) -> Path:
        base = Path(self.config.audit_dir) if self.config.audit_dir else Settings.load().home / "audit" / "harvey"
        return base / f"{self.ctx.connection.name}.jsonl"

    def _keep_audit(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        path = self._audit_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n")

    def _audit(self, cp: HarveyCheckpoint, now: int) -> Iterator[HarveyCheckpoint]:
        if not cp.audit_seeded:
            seed = self.client.audit_search(now - self.config.lookback_days * 86_400)
            if seed is None:
                return
            self._keep_audit([seed])  # ``from`` is exclusive: the seed is kept on its own
            cp.audit_last_id, cp.audit_seeded = str(seed["id"]), True
            yield cp.model_copy(deep=True)
        kept = 0
        while cp.audit_last_id:
            page = self.client.audit_page(cp.audit_last_id, take=AUDIT_MAX_TAKE)
            if not page:
                break
            self._keep_audit(page)
            kept += len(page)
            cp.audit_last_id = str(page[-1]["id"])
            yield cp.model_copy(deep=True)
            if len(page) < AUDIT_MAX_TAKE:
                break
        self.ctx.log.info("harvey: audit: %d new log entries kept for the operator", kept)
