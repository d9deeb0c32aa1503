"""The service kit's shared tables: typed outbox events, idempotency keys, identity calls.

Mirrors mesh/kit/tables.py.

Revision ID: mesh_0002
Revises: mesh_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mesh_0002"
down_revision = "mesh_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``outbox.data_schema`` and create ``idempotency_keys`` and ``identity_calls``."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("data_schema", sa.String(200), nullable=False, server_default=""))
    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("principal", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_idempotency_keys_create_time", "idempotency_keys", ["create_time"])
    op.create_table(
        "identity_calls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("done_time", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_identity_calls_pending", "identity_calls", ["organization_id", "done_time", "create_time"])


def downgrade() -> None:
    """Drop the kit's tables and ``outbox.data_schema``."""
    op.drop_index("ix_identity_calls_pending", table_name="identity_calls")
    op.drop_table("identity_calls")
    op.drop_index("ix_idempotency_keys_create_time", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("data_schema")
