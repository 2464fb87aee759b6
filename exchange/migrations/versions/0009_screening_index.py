"""name screening by index: candidate-retrieval keys of every returnee's names, with the birth year

Revision ID: 0009_screening_index
Revises: 0008_envelope_outcomes
Create Date: 2026-12-02 13:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_screening_index'
down_revision: str | None = '0008_envelope_outcomes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    blocks = op.create_table('returnee_name_blocks',
    sa.Column('returnee_id', sa.Uuid(), nullable=False),
    sa.Column('block', sa.String(length=40), nullable=False),
    sa.Column('birth_year', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['returnee_id'], ['returnees.id'], name=op.f('fk_returnee_name_blocks_returnee_id_returnees'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('returnee_id', 'block', name=op.f('pk_returnee_name_blocks'))
    )
    with op.batch_alter_table('returnee_name_blocks', schema=None) as batch_op:
        batch_op.create_index('ix_returnee_name_blocks_block_birth_year', ['block', 'birth_year', 'returnee_id'], unique=False)

    # Backfill from the stored name keys (the keys of the code that wrote them, as screening reads them).
    from exchange.register.matching import name_blocks

    keys = sa.table('returnee_search_keys', sa.column('returnee_id', sa.Uuid()), sa.column('kind', sa.String()),
                    sa.column('key', sa.String()), sa.column('birth_year', sa.Integer()))
    bind = op.get_bind()
    rows: dict[object, tuple[int | None, set[str]]] = {}
    for returnee_id, key, birth_year in bind.execute(
        sa.select(keys.c.returnee_id, keys.c.key, keys.c.birth_year).where(keys.c.kind == 'name')
    ):
        rows.setdefault(returnee_id, (birth_year, set()))[1].update(name_blocks(tuple(key.split())))
    batch: list[dict[str, object]] = []
    for returnee_id, (birth_year, found) in rows.items():
        batch += [{'returnee_id': returnee_id, 'block': b, 'birth_year': birth_year} for b in sorted(found)]
        if len(batch) >= _BATCH:
            bind.execute(sa.insert(blocks), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(blocks), batch)


def downgrade() -> None:
    with op.batch_alter_table('returnee_name_blocks', schema=None) as batch_op:
        batch_op.drop_index('ix_returnee_name_blocks_block_birth_year')

    op.drop_table('returnee_name_blocks')
