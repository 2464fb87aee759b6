"""envelope outcomes: the answer to a stored call, kept so that the same envelope sent again gets it back

Revision ID: 0008_envelope_outcomes
Revises: 0007_dual_control_principals
Create Date: 2026-12-02 13:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_envelope_outcomes'
down_revision: str | None = '0007_dual_control_principals'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('envelope_outcomes',
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('msg_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('plaintext_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('sealed_body', sa.LargeBinary(), nullable=True),
    sa.Column('storage_kid', sa.String(length=64), nullable=True),
    sa.Column('record_ids', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sender', 'msg_id', name=op.f('pk_envelope_outcomes'))
    )
    with op.batch_alter_table('envelope_outcomes', schema=None) as batch_op:
        batch_op.create_index('ix_envelope_outcomes_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('envelope_outcomes', schema=None) as batch_op:
        batch_op.drop_index('ix_envelope_outcomes_expires_at')
    op.drop_table('envelope_outcomes')
