"""name screening: a feed of rewrites of returnees' screening keys, read by each worker's in-memory name index

Revision ID: 0012_name_changes
Revises: 0011_events
Create Date: 2026-12-02 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_name_changes'
down_revision: str | None = '0011_events'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('returnee_name_changes',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('returnee_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['returnee_id'], ['returnees.id'], name=op.f('fk_returnee_name_changes_returnee_id_returnees'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_returnee_name_changes')),
    sqlite_autoincrement=True
    )


def downgrade() -> None:
    op.drop_table('returnee_name_changes')
