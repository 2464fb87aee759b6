"""key registry, dual-control approvals, agency key lifecycle

Revision ID: 0005_keys
Revises: 0004_envelope
Create Date: 2026-11-25 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_keys'
down_revision: str | None = '0004_envelope'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('exchange_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('algorithm', sa.String(length=24), nullable=False),
    sa.Column('x', sa.String(length=64), nullable=True),
    sa.Column('activate_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retire_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.Text(), nullable=True),
    sa.Column('destroyed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("purpose IN ('token', 'envelope-sign', 'envelope-enc', 'audit', 'storage')",
                       name=op.f('ck_exchange_keys_purpose')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_keys')),
    sa.UniqueConstraint('kid', name=op.f('uq_exchange_keys_kid'))
    )
    with op.batch_alter_table('exchange_keys', schema=None) as batch_op:
        batch_op.create_index('ix_exchange_keys_purpose', ['purpose'], unique=False)

    op.create_table('key_approvals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('operation', sa.String(length=8), nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('requested_by', sa.String(length=64), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("operation IN ('revoke', 'destroy')", name=op.f('ck_key_approvals_operation')),
    sa.CheckConstraint("status IN ('pending', 'executed', 'expired', 'refused')",
                       name=op.f('ck_key_approvals_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_key_approvals'))
    )
    with op.batch_alter_table('key_approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_key_approvals_kid'), ['kid'], unique=False)

    # Agency keys: pending -> active -> retiring (until retire_at) -> retired; revoked from any state.
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retire_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(op.f('ck_client_keys_status'), type_='check')
        batch_op.create_check_constraint(
            'status', "status IN ('pending', 'active', 'retiring', 'retired', 'revoked')")
    op.execute("UPDATE client_keys SET activated_at = created_at WHERE status = 'active'")


def downgrade() -> None:
    op.execute("UPDATE client_keys SET status = 'revoked' WHERE status NOT IN ('active', 'revoked')")
    with op.batch_alter_table('client_keys', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_client_keys_status'), type_='check')
        batch_op.create_check_constraint('status', "status IN ('active', 'revoked')")
        batch_op.drop_column('retire_at')
        batch_op.drop_column('activated_at')
    with op.batch_alter_table('key_approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_key_approvals_kid'))
    op.drop_table('key_approvals')
    with op.batch_alter_table('exchange_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_exchange_keys_purpose')
    op.drop_table('exchange_keys')
