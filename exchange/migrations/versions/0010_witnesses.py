"""witnesses: the checkpoint signer's lease and the witnesses' cosignatures

Revision ID: 0010_witnesses
Revises: 0009_screening_index
Create Date: 2026-12-02 13:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_witnesses'
down_revision: str | None = '0009_screening_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_cosignatures',
    sa.Column('checkpoint_size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('witness', sa.String(length=200), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('cosigned_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('checkpoint_size', 'witness', name=op.f('pk_audit_cosignatures'))
    )
    op.create_table('audit_signer',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_signer_singleton')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_signer'))
    )


def downgrade() -> None:
    op.drop_table('audit_signer')
    op.drop_table('audit_cosignatures')
