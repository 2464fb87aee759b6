"""audit queue: entries committed with their call, sequenced into the log after the commit

Revision ID: 0006_audit_queue
Revises: 0005_keys
Create Date: 2026-11-28 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_audit_queue'
down_revision: str | None = '0005_keys'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_queue',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('agency', sa.String(length=16), nullable=True),
    sa.Column('client_id', sa.String(length=128), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=True),
    sa.Column('record_ids', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_queue')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue_id', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Entries still queued would be lost with the table: sequence them first (`exchange audit checkpoint`).
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_column('queue_id')
    op.drop_table('audit_queue')
