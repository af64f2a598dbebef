"""jobs.artifacts_deleted_at: when a job's artifacts were deleted (DELETE or the retention pass), so
the artifact routes answer 404 `artifacts_deleted` instead of an empty list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 03:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("artifacts_deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("artifacts_deleted_at")
