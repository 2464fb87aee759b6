"""dual control between principals: an approval records the security client (and keys) that filed and decided it

Revision ID: 0007_dual_control_principals
Revises: 0006_audit_queue
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_dual_control_principals'
down_revision: str | None = '0006_audit_queue'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('key_approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_by_client', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('requested_by_keys', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('decided_by_client', sa.String(length=64), nullable=True))
    # A request filed before now names only an officer claim, not who filed it: it can no longer be approved.
    op.execute("UPDATE key_approvals SET status = 'expired' WHERE status = 'pending'")


def downgrade() -> None:
    with op.batch_alter_table('key_approvals', schema=None) as batch_op:
        batch_op.drop_column('decided_by_client')
        batch_op.drop_column('requested_by_keys')
        batch_op.drop_column('requested_by_client')
