"""audit: the tamper-evident audit log (entries, record ids, tree nodes, head, checkpoints)

Revision ID: 0002_audit
Revises: 0001_register
Create Date: 2026-11-25 04:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_audit'
down_revision: str | None = '0001_register'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_checkpoints',
    sa.Column('size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('origin', sa.String(length=200), nullable=False),
    sa.Column('root', sa.LargeBinary(length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size', name=op.f('pk_audit_checkpoints'))
    )
    op.create_table('audit_entries',
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.Column('time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('agency', sa.String(length=16), nullable=True),
    sa.Column('client_id', sa.String(length=128), nullable=True),
    sa.Column('purpose', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('idx', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entries_action_idx', ['action', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_agency_idx', ['agency', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_client_id_idx', ['client_id', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_outcome_idx', ['outcome', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_purpose_idx', ['purpose', 'idx'], unique=False)
        batch_op.create_index('ix_audit_entries_time', ['time'], unique=False)

    op.create_table('audit_entry_records',
    sa.Column('record_id', sa.String(length=64), nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('record_id', 'idx', name=op.f('pk_audit_entry_records'))
    )
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('frontier', sa.LargeBinary(), nullable=False),
    sa.Column('checkpoint_size', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_head_singleton')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('audit_nodes',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('level', 'idx', name=op.f('pk_audit_nodes'))
    )


def downgrade() -> None:
    op.drop_table('audit_nodes')
    op.drop_table('audit_head')
    op.drop_table('audit_entry_records')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entries_time')
        batch_op.drop_index('ix_audit_entries_purpose_idx')
        batch_op.drop_index('ix_audit_entries_outcome_idx')
        batch_op.drop_index('ix_audit_entries_client_id_idx')
        batch_op.drop_index('ix_audit_entries_agency_idx')
        batch_op.drop_index('ix_audit_entries_action_idx')

    op.drop_table('audit_entries')
    op.drop_table('audit_checkpoints')
