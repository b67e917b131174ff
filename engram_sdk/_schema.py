"""Table definitions used by queries. The schema itself is created and upgraded only by the
Alembic migrations in ``_migrations/versions``; a new table goes in both places."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("team_id", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("connection_id", sa.String(200), nullable=False),
    sa.Column("source", sa.String(1000), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(2100), nullable=False),
    sa.Column("time", sa.String(64), nullable=False),
    sa.Column("kid", sa.String(100)),
    sa.Column("sig", sa.String(200)),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("core", sa.Text(), nullable=False),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("team_id", "event_id", name="uq_events_team_event"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("connection_id", sa.String(200), primary_key=True),
    sa.Column("state", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

trusted_keys = sa.Table(
    "trusted_keys",
    metadata,
    sa.Column("kid", sa.String(100), primary_key=True),
    sa.Column("team_id", sa.String(200), primary_key=True),
    sa.Column("algorithm", sa.String(20), nullable=False),
    sa.Column("public_key", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

# --- connector framework (migration 0002) ------------------------------------------------------------

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("platform", sa.String(100), nullable=False),
    sa.Column("team_id", sa.String(200), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("config", sa.Text(), nullable=False),  # JSON, secret fields left out
    sa.Column("source", sa.String(1000)),
    sa.Column("account_name", sa.String(1000)),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("last_sync_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text()),
    sa.Column("last_counts", sa.Text()),
    sa.Column("meta", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

connector_secrets = sa.Table(
    "connector_secrets",
    metadata,
    sa.Column("connection_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("ciphertext", sa.Text(), nullable=False),  # Fernet token
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

sync_failures = sa.Table(
    "sync_failures",
    metadata,
    sa.Column("connection_id", sa.String(200), primary_key=True),
    sa.Column("entity_id", sa.String(2100), primary_key=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
)

webhook_queue = sa.Table(
    "webhook_queue",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("connection_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # "entity" | "resync"
    sa.Column("entity_id", sa.String(2100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # "pending" | "done" | "dead"
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.Float(), nullable=False),  # unix seconds
    sa.Column("locked_until", sa.Float(), nullable=False),  # unix seconds; a worker's lease
    sa.Column("last_error", sa.Text()),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("connection_id", sa.String(200), primary_key=True),
    sa.Column("delivery_id", sa.String(500), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# --- adapter registry (migration 0003) ---------------------------------------------------------------

adapter_versions = sa.Table(
    "adapter_versions",
    metadata,
    sa.Column("team_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # published | rejected | retired
    sa.Column("path", sa.String(1000), nullable=False),  # relative to the adapters directory
    sa.Column("manifest", sa.Text(), nullable=False),
    sa.Column("reason", sa.Text()),  # why the gates failed, for a rejected version
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

adapter_current = sa.Table(
    "adapter_current",
    metadata,
    sa.Column("team_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# --- server (migration 0004) ------------------------------------------------------------------------

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("team_id", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

train_jobs = sa.Table(
    "train_jobs",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("team_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("from_scratch", sa.Boolean(), nullable=False),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    sa.Column("message", sa.Text()),
    sa.Column("version", sa.Integer()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("step", sa.Integer()),  # migration 0006
    sa.Column("total_steps", sa.Integer()),
    sa.Column("progress_at", sa.DateTime(timezone=True)),
)

# --- scheduler (migration 0005) ---------------------------------------------------------------------

scheduler_lock = sa.Table(
    "scheduler_lock",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("owner", sa.String(300), nullable=False),  # host:pid:token of the running scheduler
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # stale after this
    sa.Column("ticks", sa.BigInteger(), nullable=False),
)

scheduler_jobs = sa.Table(
    "scheduler_jobs",
    metadata,
    sa.Column("job_id", sa.String(191), primary_key=True),  # "sync:<connection>" | "update:<team>" | "sleep:<team>"
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False),  # what the operator asked for
    sa.Column("run_now_at", sa.DateTime(timezone=True)),  # a pending `engram schedule run-now`
    sa.Column("retry_at", sa.DateTime(timezone=True)),  # a failed run is retried from then on
    sa.Column("runs", sa.Integer(), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),  # consecutive
    sa.Column("last_status", sa.String(20)),
    sa.Column("last_error", sa.Text()),
    sa.Column("last_events", sa.Integer()),
    sa.Column("last_seconds", sa.Float()),
    sa.Column("last_started_at", sa.DateTime(timezone=True)),
    sa.Column("last_finished_at", sa.DateTime(timezone=True)),
    sa.Column("meta", sa.Text(), nullable=False),  # JSON
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# APScheduler 3's SQLAlchemyJobStore layout; APScheduler writes it, `engram schedule list` reads it.
apscheduler_jobs = sa.Table(
    "engram_apscheduler_jobs",
    metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary(), nullable=False),
)
