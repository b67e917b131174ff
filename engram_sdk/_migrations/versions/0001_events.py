"""Events, connector checkpoints and trusted signing keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite only makes INTEGER PRIMARY KEY an auto-incrementing rowid; BIGINT elsewhere.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("team_id", sa.String(200), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("connection_id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(2100), nullable=False),
        sa.Column("time", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(100), nullable=True),
        sa.Column("sig", sa.String(200), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("core", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("team_id", "event_id", name="uq_events_team_event"),
    )
    op.create_index("ix_events_team_seq", "events", ["team_id", "seq"])
    op.create_index("ix_events_team_subject", "events", ["team_id", "subject"])
    op.create_table(
        "checkpoints",
        sa.Column("connection_id", sa.String(200), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "trusted_keys",
        sa.Column("kid", sa.String(100), primary_key=True),
        sa.Column("team_id", sa.String(200), primary_key=True),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trusted_keys")
    op.drop_table("checkpoints")
    op.drop_index("ix_events_team_subject", "events")
    op.drop_index("ix_events_team_seq", "events")
    op.drop_table("events")
