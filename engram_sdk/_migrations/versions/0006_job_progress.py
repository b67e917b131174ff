"""Training jobs report their progress: the step reached, the steps in all, and when it was written
(a running job whose progress stopped moving is stuck, not slow).

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("train_jobs", sa.Column("step", sa.Integer(), nullable=True))
    op.add_column("train_jobs", sa.Column("total_steps", sa.Integer(), nullable=True))
    op.add_column("train_jobs", sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("train_jobs") as batch:  # SQLite drops columns by copying the table
        batch.drop_column("progress_at")
        batch.drop_column("total_steps")
        batch.drop_column("step")
