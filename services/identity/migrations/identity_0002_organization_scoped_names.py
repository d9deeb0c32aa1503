"""Organisation-scoped names (issue #8).

team_hub's memberships and developer_api's API keys are now named under their
organisation (``organizations/{organization}/members/{member}``,
``organizations/{organization}/api_keys/{api_key}``), so the columns that hold such
names grow to 200 characters and the stored names move to the new form wherever the
row knows its organisation. Audit idempotency keys become unique per organisation
(AIP-155: the scope of a ``request_id`` is organisation, method and id), so two
organisations recorded through the same service can no longer collide.

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


def _scope(table: str, column: str, organization: str) -> None:
    """Prefix ``organizations/{organization}/`` to old-form names in ``column`` where the row has an organisation."""
    rows = sa.table(table, sa.column(column, sa.String), sa.column(organization, sa.String))
    name, owner = rows.c[column], rows.c[organization]
    old_form = sa.or_(*(name.like(f"{collection}%") for collection in _SCOPED))
    scoped = sa.literal("organizations/", sa.String) + owner + sa.literal("/", sa.String) + name
    op.execute(rows.update().where(old_form, owner != "").values({column: scoped}))


def upgrade() -> None:
    """Widen the name columns, move the names to the scoped form, scope audit idempotency keys."""
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
        batch.create_unique_constraint(
            "uq_audit_events_organization_idempotency_key", ["organization_id", "idempotency_key"]
        )
    _scope("user_organizations", "member", "organization_id")
    _scope("revocations", "principal", "organization_id")
    _scope("audit_events", "actor_principal", "organization_id")
    _scope("audit_events", "target", "organization_id")


def downgrade() -> None:
    """Back to one idempotency key per calling service.

    The columns stay wide and the names keep their scoped form: narrowing would cut them.
    Fails when two organisations already used the same key through one service.
    """
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_constraint("uq_audit_events_organization_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_audit_events_idempotency_key", ["idempotency_key"])
