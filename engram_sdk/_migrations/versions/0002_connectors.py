"""Connector framework: connections, secrets (database backend), sync failures, the webhook queue.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("platform", sa.String(100), nullable=False),
        sa.Column("team_id", sa.String(200), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("source", sa.String(1000), nullable=True),
        sa.Column("account_name", sa.String(1000), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("last_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_counts", sa.Text(), nullable=True),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "connector_secrets",
        sa.Column("connection_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sync_failures",
        sa.Column("connection_id", sa.String(200), primary_key=True),
        sa.Column("entity_id", sa.String(2100), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_queue",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("connection_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.String(2100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_queue_due", "webhook_queue", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_queue_entity", "webhook_queue", ["connection_id", "entity_id", "status"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("connection_id", sa.String(200), primary_key=True),
        sa.Column("delivery_id", sa.String(500), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_queue_entity", "webhook_queue")
    op.drop_index("ix_webhook_queue_due", "webhook_queue")
    op.drop_table("webhook_queue")
    op.drop_table("sync_failures")
    op.drop_table("connector_secrets")
    op.drop_table("connections")
