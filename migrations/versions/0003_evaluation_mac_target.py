"""evaluation_results.mac_target: the target of a sweep that compressed figures belong to (null for
the dense baseline and for single-target jobs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluation_results") as batch:
        batch.add_column(sa.Column("mac_target", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluation_results") as batch:
        batch.drop_column("mac_target")
