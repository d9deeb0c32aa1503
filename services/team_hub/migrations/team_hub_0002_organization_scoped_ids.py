"""Ids unique per organisation, and team hub's tables on the service kit.

Resource names became ``organizations/{organization}/…`` (docs/CONTRACTS.md), so two
organisations may use the same caller-chosen id: memberships, invitations, teams and
team_members get ``(organization_id, id)`` keys. A primary key cannot be changed in place
on SQLite, so the five tables are set aside, rebuilt and their rows copied over; on the way
they take the kit's shape (:mod:`mesh.kit.sql`):

- ``version`` becomes ``revision`` (the optimistic-locking counter of ``Revisioned``);
- JSON columns become JSONB on PostgreSQL (``JsonDocument``);
- the per-table ``request_id`` columns go: request_ids live in the kit's
  ``idempotency_keys`` now (a retry of a request made before this migration is a new
  request);
- ``memberships.invitation`` and ``invitations.membership`` held a name of another row and
  now hold its id (``invitation_id``, ``membership_id``);
- the calls owed to identity move from ``identity_outbox`` to the kit's ``identity_calls``
  (created by ``mesh_0002``), their targets rewritten to the new names, since a retried
  RemoveMember looks its removal up by name.

Revision ID: team_hub_0002
Revises: team_hub_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "team_hub_0002"
down_revision = "team_hub_0001"
branch_labels = None
depends_on = "mesh_0002"

_OLD = "_0001"
_TABLES = ("team_members", "teams", "invitations", "memberships", "organizations")
# Index-backed constraints whose names PostgreSQL keeps when a table is renamed; they are
# renamed out of the way so the new tables can use them.
_POSTGRES_CONSTRAINTS = {
    "organizations": ["organizations_pkey", "organizations_request_id_key"],
    "memberships": ["memberships_pkey", "uq_memberships_organization_user"],
    "invitations": ["invitations_pkey", "invitations_token_hash_key", "uq_invitations_request_id"],
    "teams": ["teams_pkey", "uq_teams_organization_display_name", "uq_teams_request_id"],
    "team_members": ["team_members_pkey"],
}
_OLD_INDEXES = {
    "organizations": ["ix_organizations_create_time"],
    "memberships": ["ix_memberships_user", "ix_memberships_organization_display_name"],
    "invitations": ["ix_invitations_organization_create_time", "uq_invitations_pending_email"],
    "teams": [],
    "team_members": ["ix_team_members_membership"],
}
_AUDIT = ["create_time", "update_time", "creator", "last_modifier"]


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
    ]


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _set_aside(table: str) -> None:
    """Rename a table to ``<table>_0001`` with nothing that would clash with its successor."""
    for index in _OLD_INDEXES[table]:
        op.drop_index(index, table_name=table)
    op.rename_table(table, table + _OLD)
    if op.get_bind().dialect.name == "postgresql":
        for constraint in _POSTGRES_CONSTRAINTS[table]:
            op.execute(f'ALTER TABLE "{table}{_OLD}" RENAME CONSTRAINT "{constraint}" TO "{constraint}{_OLD}"')


def _copy(table: str, columns: list[str], values: list[sa.ColumnElement[object]], source: sa.FromClause) -> None:
    target = sa.table(table, *(sa.column(name) for name in columns))
    op.execute(sa.insert(target).from_select(columns, sa.select(*values).select_from(source)))


def _old(table: str, *columns: str) -> sa.TableClause:
    return sa.table(table + _OLD, *(sa.column(name) for name in columns))


def _id_of(name: sa.ColumnClause[object], prefix: str) -> sa.ColumnElement[object]:
    """The id in ``prefix/{id}`` ("" when the column is empty)."""
    return sa.case(
        (sa.cast(name, sa.String).like(f"{prefix}/%"), sa.func.substr(name, len(prefix) + 2)),
        else_=sa.literal(""),
    )


def _document(column: sa.ColumnClause[object]) -> sa.ColumnElement[object]:
    """A JSON column's value for a JSONB column on PostgreSQL (as is on SQLite)."""
    return sa.cast(column, JSONB) if op.get_bind().dialect.name == "postgresql" else column


def _moved(plain: list[str], old: sa.TableClause) -> tuple[list[str], list[sa.ColumnElement[object]]]:
    """The columns copied as they are, plus ``version`` copied into ``revision``."""
    return [*plain, *_AUDIT, "revision"], [*(old.c[name] for name in [*plain, *_AUDIT]), old.c.version]


def upgrade() -> None:
    """Rebuild the five tables with per-organisation keys in the kit's shape; move the identity outbox."""
    for table in _TABLES:
        _set_aside(table)

    op.create_table(
        "organizations",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("plan", sa.String(32), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=False),
        sa.Column("max_members", sa.Integer(), nullable=False),
        sa.Column("parent_organization_id", sa.String(63), nullable=False),
        sa.Column("billing_email", sa.String(254), nullable=False),
        sa.Column("country_code", sa.String(2), nullable=False),
        sa.Column("kyc_verified", sa.Boolean(), nullable=False),
        sa.Column("suspend_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("member_epoch", sa.Integer(), nullable=False),
        *_audit_columns(),
    )
    plain = [
        "id",
        "display_name",
        "state",
        "state_reason",
        "plan",
        "concurrency_limit",
        "max_members",
        "parent_organization_id",
        "billing_email",
        "country_code",
        "kyc_verified",
        "suspend_time",
        "close_time",
        "member_epoch",
    ]
    old = _old("organizations", *plain, *_AUDIT, "version", "labels")
    columns, values = _moved(plain, old)
    _copy("organizations", [*columns, "labels"], [*values, _document(old.c.labels)], old)

    op.create_table(
        "memberships",
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("invitation_id", sa.String(32), nullable=False),
        sa.Column("join_time", sa.DateTime(timezone=True), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "user", name="uq_memberships_organization_user"),
    )
    plain = ["organization_id", "id", "user", "email", "display_name", "role", "expire_time", "join_time"]
    old = _old("memberships", *plain, *_AUDIT, "version", "invitation")
    columns, values = _moved(plain, old)
    _copy("memberships", [*columns, "invitation_id"], [*values, _id_of(old.c.invitation, "invitations")], old)

    op.create_table(
        "invitations",
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("teams", _json(), nullable=False),
        sa.Column("member_expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.String(500), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("inviter", sa.String(200), nullable=False),
        sa.Column("accept_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.String(200), nullable=False),
        sa.Column("membership_id", sa.String(32), nullable=False),
        sa.Column("revoke_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_send_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("token_salt", sa.String(64), nullable=True),
        *_audit_columns(),
    )
    plain = [
        "organization_id",
        "id",
        "email",
        "role",
        "member_expire_time",
        "message",
        "state",
        "expire_time",
        "inviter",
        "accept_time",
        "accepted_by",
        "revoke_time",
        "last_send_time",
        "token_hash",
        "token_salt",
    ]
    old = _old("invitations", *plain, *_AUDIT, "version", "teams", "membership")
    columns, values = _moved(plain, old)
    _copy(
        "invitations",
        [*columns, "teams", "membership_id"],
        [*values, _document(old.c.teams), _id_of(old.c.membership, "members")],
        old,
    )

    op.create_table(
        "teams",
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "display_name", name="uq_teams_organization_display_name"),
    )
    plain = ["organization_id", "id", "display_name", "description"]
    old = _old("teams", *plain, *_AUDIT, "version", "labels")
    columns, values = _moved(plain, old)
    _copy("teams", [*columns, "labels"], [*values, _document(old.c.labels)], old)

    op.create_table(
        "team_members",
        sa.Column("organization_id", sa.String(63), primary_key=True),
        sa.Column("team_id", sa.String(63), primary_key=True),
        sa.Column("membership_id", sa.String(32), primary_key=True),
        sa.Column("lead", sa.Boolean(), nullable=False),
        sa.Column("add_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "team_id"],
            ["teams.organization_id", "teams.id"],
            name="fk_team_members_team",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "membership_id"],
            ["memberships.organization_id", "memberships.id"],
            name="fk_team_members_membership",
            ondelete="CASCADE",
        ),
    )
    places = _old("team_members", "team_id", "membership_id", "lead", "add_time")
    members = _old("memberships", "id", "organization_id")
    _copy(
        "team_members",
        ["organization_id", "team_id", "membership_id", "lead", "add_time"],
        [members.c.organization_id, places.c.team_id, places.c.membership_id, places.c.lead, places.c.add_time],
        places.join(members, members.c.id == places.c.membership_id),
    )

    for table in _TABLES:
        op.drop_table(table + _OLD)

    op.create_index("ix_organizations_create_time", "organizations", ["create_time", "id"])
    op.create_index("ix_memberships_user", "memberships", ["user", "join_time"])
    op.create_index(
        "ix_memberships_organization_display_name", "memberships", ["organization_id", "display_name", "id"]
    )
    op.create_index("ix_invitations_organization_create_time", "invitations", ["organization_id", "create_time", "id"])
    op.create_index(
        "uq_invitations_pending_email",
        "invitations",
        ["organization_id", "email"],
        unique=True,
        sqlite_where=sa.text("state = 'PENDING'"),
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index("ix_team_members_membership", "team_members", ["organization_id", "membership_id"])

    _move_identity_outbox()


def _move_identity_outbox() -> None:
    """Copy every identity call into the kit's ``identity_calls``, under the new names; drop the old table."""
    columns = ["id", "organization_id", "kind", "payload", "create_time", "attempts", "last_error", "done_time"]
    old = sa.table("identity_outbox", *(sa.column(name) for name in [*columns, "target"]))
    renamed = sa.case(
        (
            sa.or_(old.c.target.like("members/%"), old.c.target.like("invitations/%")),
            sa.literal("organizations/") + old.c.organization_id + sa.literal("/") + old.c.target,
        ),
        else_=old.c.target,
    )
    _copy("identity_calls", [*columns, "target"], [*(old.c[name] for name in columns), renamed], old)
    op.drop_index("ix_identity_outbox_pending", table_name="identity_outbox")
    op.drop_table("identity_outbox")


def downgrade() -> None:
    """Not supported: ids that two organisations now share cannot go back to one global key."""
    raise NotImplementedError("team_hub_0002 cannot be downgraded")
