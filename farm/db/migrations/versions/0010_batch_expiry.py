"""batch expiry

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:30:00.000000
"""

from alembic import op
import sqlalchemy as sa
import farm.db.models


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('batches', sa.Column('expired_at', farm.db.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('batches', 'expired_at')
