"""Keys have an owner: the member who answers for them, whose removal revokes them.

``api_keys.owner`` starts as each key's creator (TransferApiKey changes it later) and is
indexed with the organisation, which is how a removed member's keys are found.

Revision ID: developer_api_0003
Revises: developer_api_0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "developer_api_0003"
down_revision = "developer_api_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``owner``, filled with the creator, and its index."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("owner", sa.String(200), nullable=False, server_default=""))
    op.execute(sa.text("UPDATE api_keys SET owner = creator"))
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("owner", server_default=None)
    op.create_index("ix_api_keys_owner", "api_keys", ["organization_id", "owner"])


def downgrade() -> None:
    """Drop ``owner`` and its index."""
    op.drop_index("ix_api_keys_owner", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("owner")
