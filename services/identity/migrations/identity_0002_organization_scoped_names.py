"""Organisation-scoped names, and request ids in the kit's store (issue #8).

team_hub's memberships and developer_api's API keys are now named under their
organisation (``organizations/{organization}/members/{member}``,
``organizations/{organization}/api_keys/{api_key}``), so the columns that hold such
names grow and the stored names move to the new form wherever the row knows its
organisation. Users take the kit's ``Revisioned`` column names. RecordAuditEvent and
RotateSigningKey now keep their request ids in the shared ``idempotency_keys`` table
(scope: organisation, method, request_id), so their own key columns go; a retry within a
day of this migration is not deduplicated.

Revision ID: identity_0002
Revises: identity_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None

# Collections whose names gained the organisation segment; identity stores names of these.
_SCOPED = ("members/", "api_keys/", "invitations/", "teams/", "agents/")
_ONE_ACTIVE = sa.text("state = 'ACTIVE'")


def _scope(table: str, column: str, organization: str) -> None:
    """Prefix ``organizations/{organization}/`` to old-form names in ``column`` where the row has an organisation."""
    rows = sa.table(table, sa.column(column, sa.String), sa.column(organization, sa.String))
    name, owner = rows.c[column], rows.c[organization]
    old_form = sa.or_(*(name.like(f"{collection}%") for collection in _SCOPED))
    scoped = sa.literal("organizations/", sa.String) + owner + sa.literal("/", sa.String) + name
    op.execute(rows.update().where(old_form, owner != "").values({column: scoped}))


def _drop_one_active_index() -> None:
    # Batch mode on SQLite copies the table; its partial index is recreated by hand, where clause and all.
    op.drop_index("ux_signing_keys_one_active", table_name="signing_keys")


def _create_one_active_index() -> None:
    op.create_index(
        "ux_signing_keys_one_active",
        "signing_keys",
        ["state"],
        unique=True,
        sqlite_where=_ONE_ACTIVE,
        postgresql_where=_ONE_ACTIVE,
    )


def upgrade() -> None:
    """Widen the name columns, move the names to the scoped form, drop the services' own request-id columns."""
    with op.batch_alter_table("user_organizations") as batch:
        batch.alter_column("member", type_=sa.String(200), existing_type=sa.String(100), existing_nullable=False)
    with op.batch_alter_table("revocations") as batch:
        batch.alter_column("principal", type_=sa.String(200), existing_type=sa.String(100), existing_nullable=False)
    with op.batch_alter_table("audit_events") as batch:
        batch.alter_column(
            "actor_principal", type_=sa.String(200), existing_type=sa.String(100), existing_nullable=False
        )
        batch.alter_column("target", type_=sa.String(255), existing_type=sa.String(200), existing_nullable=False)
        batch.drop_constraint("uq_audit_events_idempotency_key", type_="unique")
        batch.drop_column("idempotency_key")
    _drop_one_active_index()
    with op.batch_alter_table("signing_keys") as batch:
        batch.drop_constraint("uq_signing_keys_rotation_request_id", type_="unique")
        batch.drop_column("rotation_request_id")
    _create_one_active_index()
    # The kit's Revisioned names (revision, last_modifier). Renamed in place: a table copy of users on
    # SQLite would drop it, and with foreign keys on, that deletes its sessions and memberships too.
    op.execute("ALTER TABLE users RENAME COLUMN version TO revision")
    op.execute("ALTER TABLE users RENAME COLUMN updater TO last_modifier")
    _scope("user_organizations", "member", "organization_id")
    _scope("revocations", "principal", "organization_id")
    _scope("audit_events", "actor_principal", "organization_id")
    _scope("audit_events", "target", "organization_id")


def downgrade() -> None:
    """Bring back the request-id columns (empty) and the old user column names.

    The columns stay wide and names keep their scoped form.
    """
    op.execute("ALTER TABLE users RENAME COLUMN last_modifier TO updater")
    op.execute("ALTER TABLE users RENAME COLUMN revision TO version")
    _drop_one_active_index()
    with op.batch_alter_table("signing_keys") as batch:
        batch.add_column(sa.Column("rotation_request_id", sa.String(100), nullable=True))
        batch.create_unique_constraint("uq_signing_keys_rotation_request_id", ["rotation_request_id"])
    _create_one_active_index()
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.create_unique_constraint("uq_audit_events_idempotency_key", ["idempotency_key"])
