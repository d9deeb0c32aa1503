"""Ids unique per organisation: ``(organization_id, id)`` keys for members, invitations, teams.

Resource names became ``organizations/{organization}/…`` (docs/CONTRACTS.md), so two
organisations may use the same caller-chosen id. The four tables are rebuilt with
composite primary keys (a primary key cannot be changed in place on SQLite), their rows
copied over, and the two columns that held a name of another row now hold its id
(``memberships.invitation`` → ``invitation_id``, ``invitations.membership`` →
``membership_id``). The identity outbox's targets are rewritten to the new names, since
a retried RemoveMember looks its removal up by name.

Revision ID: team_hub_0002
Revises: team_hub_0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "team_hub_0002"
down_revision = "team_hub_0001"
branch_labels = None
depends_on = None

_OLD = "_0001"
# Index-backed constraints whose names PostgreSQL keeps when a table is renamed; they are
# renamed out of the way so the new tables can use them.
_POSTGRES_CONSTRAINTS = {
    "memberships": ["memberships_pkey", "uq_memberships_organization_user"],
    "invitations": ["invitations_pkey", "invitations_token_hash_key", "uq_invitations_request_id"],
    "teams": ["teams_pkey", "uq_teams_organization_display_name", "uq_teams_request_id"],
    "team_members": ["team_members_pkey"],
}
_OLD_INDEXES = {
    "memberships": ["ix_memberships_user", "ix_memberships_organization_display_name"],
    "invitations": ["ix_invitations_organization_create_time", "uq_invitations_pending_email"],
    "teams": [],
    "team_members": ["ix_team_members_membership"],
}


def _audit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("creator", sa.String(200), nullable=False),
        sa.Column("last_modifier", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    ]


_AUDIT = ["create_time", "update_time", "creator", "last_modifier", "version"]


def _set_aside(table: str) -> None:
    """Rename a table to ``<table>_0001`` with nothing that would clash with its successor."""
    for index in _OLD_INDEXES[table]:
        op.drop_index(index, table_name=table)
    op.rename_table(table, table + _OLD)
    if op.get_bind().dialect.name == "postgresql":
        for constraint in _POSTGRES_CONSTRAINTS[table]:
            op.execute(f'ALTER TABLE "{table}{_OLD}" RENAME CONSTRAINT "{constraint}" TO "{constraint}{_OLD}"')


def _copy(table: str, columns: list[str], source: sa.Select[tuple[object, ...]]) -> None:
    target = sa.table(table, *(sa.column(name) for name in columns))
    op.execute(sa.insert(target).from_select(columns, source))


def _old(table: str, *columns: str) -> sa.TableClause:
    return sa.table(table + _OLD, *(sa.column(name) for name in columns))


def _id_of(name: sa.ColumnClause[object], prefix: str) -> sa.ColumnElement[str]:
    """The id in ``prefix/{id}`` ("" when the column is empty)."""
    return sa.case(
        (sa.cast(name, sa.String).like(f"{prefix}/%"), sa.func.substr(name, len(prefix) + 2)),
        else_=sa.literal(""),
    )


def upgrade() -> None:
    """Rebuild memberships, invitations, teams and team_members with per-organisation keys."""
    for table in ("team_members", "teams", "invitations", "memberships"):
        _set_aside(table)

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
    plain = ["organization_id", "id", "user", "email", "display_name", "role", "expire_time", "join_time", *_AUDIT]
    old = _old("memberships", *plain, "invitation")
    _copy(
        "memberships",
        [*plain, "invitation_id"],
        sa.select(*(old.c[name] for name in plain), _id_of(old.c.invitation, "invitations")),
    )

    op.create_table(
        "invitations",
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
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
        sa.Column("request_id", sa.String(128), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "request_id", name="uq_invitations_request_id"),
    )
    plain = [
        "organization_id",
        "id",
        "email",
        "role",
        "teams",
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
        "request_id",
        *_AUDIT,
    ]
    old = _old("invitations", *plain, "membership")
    _copy(
        "invitations",
        [*plain, "membership_id"],
        sa.select(*(old.c[name] for name in plain), _id_of(old.c.membership, "members")),
    )

    op.create_table(
        "teams",
        sa.Column("organization_id", sa.String(63), sa.ForeignKey("organizations.id"), primary_key=True),
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        *_audit_columns(),
        sa.UniqueConstraint("organization_id", "display_name", name="uq_teams_organization_display_name"),
        sa.UniqueConstraint("organization_id", "request_id", name="uq_teams_request_id"),
    )
    plain = ["organization_id", "id", "display_name", "description", "labels", "request_id", *_AUDIT]
    old = _old("teams", *plain)
    _copy("teams", plain, sa.select(*(old.c[name] for name in plain)))

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
        sa.select(
            members.c.organization_id, places.c.team_id, places.c.membership_id, places.c.lead, places.c.add_time
        ).select_from(places.join(members, members.c.id == places.c.membership_id)),
    )

    for table in ("team_members", "teams", "invitations", "memberships"):
        op.drop_table(table + _OLD)

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

    with op.batch_alter_table("identity_outbox") as batch:
        batch.alter_column("target", type_=sa.String(200), existing_type=sa.String(100), existing_nullable=False)
    outbox = sa.table("identity_outbox", sa.column("organization_id"), sa.column("target"))
    op.execute(
        sa.update(outbox)
        .where(sa.or_(outbox.c.target.like("members/%"), outbox.c.target.like("invitations/%")))
        .values(target=sa.literal("organizations/") + outbox.c.organization_id + sa.literal("/") + outbox.c.target)
    )


def downgrade() -> None:
    """Not supported: ids that two organisations now share cannot go back to one global key."""
    raise NotImplementedError("team_hub_0002 cannot be downgraded")
