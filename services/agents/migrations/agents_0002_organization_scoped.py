"""Agent ids unique per organisation; the kit's shared idempotency store replaces ours.

Mirrors services/agents/models.py. ``agents`` and ``agent_versions`` are rebuilt with
``(organization_id, id)`` keys (SQLite cannot change a primary key in place), copying
every row; versions take their agent's organisation. ``agent_create_requests`` goes:
CreateAgent's request_ids now live in the shared ``idempotency_keys`` table, and keys
recorded before this migration are dropped (they would expire within 24 hours anyway).

Revision ID: agents_0002
Revises: agents_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "agents_0002"
down_revision = "agents_0001"
branch_labels = None
depends_on = None

_AGENT_COLUMNS = (
    "organization_id, id, display_name, description, state, draft, labels, latest_version, pinned_version, "
    "revision, creator, last_modifier, create_time, update_time"
)


def upgrade() -> None:
    """Rebuild the agents tables with organisation-scoped keys, keeping every row."""
    op.create_table(
        "agents_v2",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("draft", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("pinned_version", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(f"INSERT INTO agents_v2 ({_AGENT_COLUMNS}) SELECT {_AGENT_COLUMNS} FROM agents")
    op.create_table(
        "agent_versions_v2",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("change_note", sa.Text(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "agent_id"],
            ["agents_v2.organization_id", "agents_v2.id"],
            name="fk_agent_versions_agent",
            ondelete="CASCADE",
        ),
    )
    op.execute(
        "INSERT INTO agent_versions_v2 (organization_id, agent_id, version, config, change_note, creator, create_time) "
        "SELECT a.organization_id, v.agent_id, v.version, v.config, v.change_note, v.creator, v.create_time "
        "FROM agent_versions v JOIN agents a ON a.id = v.agent_id"
    )
    op.drop_index("ix_agent_create_requests_create_time", table_name="agent_create_requests")
    op.drop_table("agent_create_requests")
    op.drop_table("agent_versions")
    op.drop_index("ix_agents_organization_listing", table_name="agents")
    op.drop_table("agents")
    op.rename_table("agents_v2", "agents")
    op.rename_table("agent_versions_v2", "agent_versions")
    op.create_index("ix_agents_organization_listing", "agents", ["organization_id", "create_time", "id"])


def downgrade() -> None:
    """Not supported: two organisations may now hold the same agent id, which the old keys cannot."""
    raise NotImplementedError("agents_0002 cannot be downgraded without losing agents")
