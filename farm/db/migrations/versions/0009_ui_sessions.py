"""ui sessions, and the jobs index the dashboard pages by

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa
import farm.db.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ui_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=40), nullable=False),
    sa.Column('org_id', sa.String(length=40), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', farm.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', farm.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id_hash')
    )
    op.create_index(op.f('ix_ui_sessions_key_id'), 'ui_sessions', ['key_id'], unique=False)
    op.create_index(op.f('ix_ui_sessions_expires_at'), 'ui_sessions', ['expires_at'], unique=False)
    # The dashboard's job list pages newest-first within an org, and within its filters (state, kind, project):
    # without these, an org with many jobs sorts them all for every page.
    op.create_index('ix_jobs_org_id', 'jobs', ['org_id', 'id'], unique=False)
    op.create_index('ix_jobs_org_state_id', 'jobs', ['org_id', 'state', 'id'], unique=False)
    op.create_index('ix_jobs_org_kind_id', 'jobs', ['org_id', 'kind', 'id'], unique=False)
    op.create_index('ix_jobs_project_id_id', 'jobs', ['project_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_project_id_id', table_name='jobs')
    op.drop_index('ix_jobs_org_kind_id', table_name='jobs')
    op.drop_index('ix_jobs_org_state_id', table_name='jobs')
    op.drop_index('ix_jobs_org_id', table_name='jobs')
    op.drop_index(op.f('ix_ui_sessions_expires_at'), table_name='ui_sessions')
    op.drop_index(op.f('ix_ui_sessions_key_id'), table_name='ui_sessions')
    op.drop_table('ui_sessions')
