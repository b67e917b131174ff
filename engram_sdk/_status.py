"""One view of a deployment's state, for ``engram status``: home, connections, webhook queue,
scheduler and each team's adapter.

``collect(settings)`` returns a plain dict (what ``engram status --json`` prints). It reads only
through the store's, the connections', the queue's, the scheduler's and the adapter registry's own
methods, opens no secrets store and copies no connection config, so no secret can reach it. The
database URL is shown with its password replaced by ``***``.

The adapter index comes from a plugin (``engram_sdk.plugins``), looked up only when called: a core
install without one that loads still gets the rest, with ``training`` saying so.
Whether the train extra (torch, transformers, peft) is installed is looked up without importing it.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import make_url

from . import plugins
from ._config import Settings, _sqlite_file, exposure_warnings
from ._connections import Connections
from ._exceptions import KeyringError, MissingExtra
from ._scheduler import list_jobs, lock_info
from ._signing import Keyring
from ._store import EventStore, as_utc
from ._webhooks import WebhookQueue
from .plugins import AdapterIndex, AdapterVersion

__all__ = ["collect", "redacted_url"]

TRAIN_MODULES = ("torch", "transformers", "peft")


def redacted_url(url: str) -> str:
    """The database URL with any password replaced by ``***``."""
    return make_url(url).render_as_string(hide_password=True)


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat(timespec="seconds") if value else None


def _training_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in TRAIN_MODULES)


def _home(settings: Settings) -> dict[str, Any]:
    db = _sqlite_file(settings.database_url)
    warnings = exposure_warnings(settings)
    try:
        signing = sorted({team for k in Keyring(settings.keys_dir).keys() if k.status == "active" for team in k.teams})
    except KeyringError as exc:
        signing = []
        warnings.append(str(exc))
    return {
        "path": str(settings.home),
        "exists": settings.home.exists(),
        "database": redacted_url(settings.database_url),
        "database_exists": db.exists() if db is not None else None,  # None: not a file (PostgreSQL)
        "signing_teams": signing,  # the teams the active signing key signs for
        "warnings": warnings,
    }


def _registry(store: EventStore, settings: Settings) -> AdapterIndex | None:
    try:
        return plugins.adapter_index(store, settings)
    except MissingExtra:
        return None


def _adapter(version: AdapterVersion, now: datetime) -> dict[str, Any]:
    m = version.manifest
    metrics = m.get("metrics", {})
    created = as_utc(version.created_at)
    gates = m.get("gates") or {}
    return {
        "version": version.version,
        "created_at": _iso(created),
        "age_seconds": round((now - created).total_seconds()) if created else None,
        "recall": metrics.get("recall"),
        "retention": metrics.get("retention"),
        "general_score": metrics.get("general_score"),
        "base_general_score": metrics.get("base_general_score"),
        "gates_passed": gates.get("passed"),
        # which speed trained it: a sleep rebuilds from scratch, an update continues its parent
        "from_scratch": m.get("from_scratch"),
        "parent_version": m.get("parent_version"),
        "gate_reasons": gates.get("reasons", []),
    }


def _next_run(job: Any, now: datetime) -> datetime | None:
    """When the job runs next: its retry, if a failed run set one earlier than the schedule."""
    if job.failures and job.retry_at is None and not job.paused:
        # the scheduler has started the retry (it clears ``retry_at`` as it does): it is due now,
        # not at the next scheduled time, which is what the scheduler's own record says meanwhile
        return now
    if job.retry_at is not None and (job.next_run_at is None or job.retry_at < job.next_run_at):
        return job.retry_at
    return job.next_run_at


def _training_run(job: Any, now: datetime) -> dict[str, Any] | None:
    """One team's update or sleep job as status shows it: when it last ran and what it did (its
    ``meta`` says which version it trained, or why it skipped), and when it runs next."""
    if job is None:
        return None
    return {"job": job.id, "paused": job.paused, "next_run_at": _iso(_next_run(job, now)),
            "last_status": job.last_status, "last_finished_at": _iso(job.last_finished_at),
            "last_error": job.last_error, "detail": job.meta.get("detail"), "version": job.meta.get("version")}


def _teams(store: EventStore, settings: Settings, team_ids: set[str], now: datetime,
           jobs: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    registry = _registry(store, settings)
    if registry is not None:
        team_ids |= set(registry.teams())
    out = []
    for team in sorted(team_ids):
        row: dict[str, Any] = {"team": team, "events": store.count(team), "adapter": None,
                               "latest_rejected": None, "waiting": None,
                               # the two speeds of training (None: no such job, e.g. updates off)
                               "update": _training_run(jobs.get(f"update:{team}"), now),
                               "sleep": _training_run(jobs.get(f"sleep:{team}"), now)}
        if registry is not None:
            versions = registry.versions(team)
            current = next((v for v in versions if v.current), None)
            if current is not None:
                row["adapter"] = _adapter(current, now)
            newer = [v for v in versions if v.status == "rejected" and (current is None or v.version > current.version)]
            if newer:
                row["latest_rejected"] = {"version": newer[-1].version, "reason": newer[-1].reason}
            # What the next training run would read: the events after the watermark (all: no adapter)
            watermark = current.manifest.get("watermark") if current is not None else None
            row["waiting"] = store.count(team, after=watermark)
        out.append(row)
    return out, registry is not None


def collect(settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """The deployment's state as one JSON-ready dict (see the module docstring)."""
    now = now or datetime.now(timezone.utc)
    home = _home(settings)
    status: dict[str, Any] = {
        "home": home, "initialised": True, "connections": [], "webhook_queue": None,
        "scheduler": None, "teams": [],
        "training": "installed" if _training_installed() else "not installed",
    }
    if home["database_exists"] is False:  # SQLite and no file yet: opening it would create it
        status["initialised"] = False
        status["next_steps"] = _next_steps(status)
        return status
    with EventStore.open(settings.database_url) as store:
        repo = Connections(store)
        queue = WebhookQueue(store)
        conns = repo.list()
        jobs = {j.id: j for j in list_jobs(store)}
        for c in conns:
            job = jobs.get(f"sync:{c.name}")
            waiting_webhooks = queue.counts(c.name)
            status["connections"].append({
                "name": c.name, "platform": c.platform, "team": c.team_id, "status": c.status,
                "last_sync_at": _iso(c.last_sync_at),
                "next_sync_at": _iso(_next_run(job, now)) if job else None,
                "paused": bool(job and job.paused),
                "last_error": c.last_error,
                "last_counts": c.last_counts,
                "failed_items": len(repo.failures(c.name)),
                "webhooks_pending": waiting_webhooks["pending"],
                "webhooks_dead": waiting_webhooks["dead"],
            })
        status["webhook_queue"] = {**queue.counts(), "dead_items": queue.dead()[:20]}
        held = lock_info(store)
        status["scheduler"] = {
            "lock": held.as_dict() if held else None,
            "running": bool(held and held.alive(now)),
            "jobs": len(jobs),
            "paused": sorted(j.id for j in jobs.values() if j.paused),
            # ``failures`` counts the errors since the last good run: a job whose retry is under way
            # (``last_status`` reads "running" meanwhile) is still failing until that retry succeeds
            "failing": sorted(j.id for j in jobs.values() if j.failures > 0),
        }
        teams = set(store.teams()) | {c.team_id for c in conns}
        status["teams"], registry = _teams(store, settings, teams, now, jobs)
        if not registry:
            status["training"] = "not installed"
    status["next_steps"] = _next_steps(status)
    return status


def _next_steps(s: dict[str, Any]) -> list[str]:
    """What to do next, for a deployment that is not fully set up yet."""
    if not s["home"]["exists"] or not s["initialised"]:
        return ["create the home and the store: `engram init`"]
    steps = []
    if not s["home"]["signing_teams"]:
        steps.append("make the signing key: `engram keys generate --team TEAM`")
    if not s["connections"]:
        steps.append("connect a workspace: `engram connect <platform> --name NAME --team TEAM --scope all` "
                     "(`engram connectors list` shows the platforms; `engram sandbox notion` runs a local one "
                     "to try it with --base-url)")
    elif not any(c["last_sync_at"] for c in s["connections"]):
        steps.append("sync the connections: `engram sync --all`")
    if s["connections"] and not (s["scheduler"] or {}).get("running"):
        steps.append("keep them in sync and train nightly: `engram schedule run`")
    for t in s["teams"]:
        if t["adapter"] is None and t["events"] and s["training"] == "installed":
            steps.append(f"train team {t['team']}'s first adapter: `engram train --team {t['team']}`")
    if s["training"] != "installed":
        steps.append("training needs the train extra: pip install 'engram-sdk[train]'")
    return steps
