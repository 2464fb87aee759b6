"""events: the outbox written with each change, its retention watermark, webhooks and their deliveries

Revision ID: 0011_events
Revises: 0010_witnesses
Create Date: 2026-12-02 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_events'
down_revision: str | None = '0010_witnesses'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('agency', sa.String(length=16), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('returnee_id', sa.Uuid(), nullable=True),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_events')),
    sa.UniqueConstraint('id', name=op.f('uq_events_id'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_agency_seq', ['agency', 'seq'], unique=False)
        batch_op.create_index('ix_events_occurred_at', ['occurred_at'], unique=False)

    op.create_table('event_retention',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pruned_through', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_retention'))
    )
    op.create_table('webhooks',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.client_id'], name=op.f('fk_webhooks_client_id_clients'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks'))
    )
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhooks_client_id'), ['client_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('webhook_id', sa.Uuid(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'], name=op.f('fk_webhook_deliveries_webhook_id_webhooks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_webhook_id'), ['webhook_id'], unique=False)

    _grant_events_to_full_clients()


# A client that held every scope of its agency keeps holding every scope: the partner library asks for all of them by
# default, so without `events:read` its next token request would be refused (invalid_scope) after an upgrade. A
# client granted less keeps what it has; a security officer grants it `events:read` if it should read events.
FULL_BEFORE = {
    "interior": {"returnees:read", "returnees:write"},
    "border": {"returnees:screen", "crossings:write"},
    "prosecutor": {"returnees:read", "decisions:write"},
}


def _grant_events_to_full_clients() -> None:
    clients = sa.table("clients", sa.column("id", sa.Uuid()), sa.column("agency", sa.String()),
                       sa.column("scopes", sa.JSON()))
    connection = op.get_bind()
    for row in connection.execute(sa.select(clients.c.id, clients.c.agency, clients.c.scopes)).all():
        scopes = list(row.scopes or [])
        if row.agency in FULL_BEFORE and FULL_BEFORE[row.agency] <= set(scopes) and "events:read" not in scopes:
            connection.execute(clients.update().where(clients.c.id == row.id)
                               .values(scopes=sorted({*scopes, "events:read"})))


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('webhooks')
    op.drop_table('event_retention')
    op.drop_table('events')
