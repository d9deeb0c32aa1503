"""Queries on users, their organisations, sessions and refresh tokens. Every function takes the session first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.identity.domain import Membership
from services.identity.models import RefreshToken, Session, User, UserOrganization


async def get_user(session: AsyncSession, user_id: str, *, for_update: bool = False) -> User | None:
    """The user with this id."""
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this (normalised) e-mail address."""
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def get_user_by_signup_request(session: AsyncSession, request_id: str) -> User | None:
    """The user created by the SignUp call with this idempotency key."""
    query = select(User).where(User.signup_request_id == request_id)
    return (await session.execute(query)).scalar_one_or_none()


async def add_user(session: AsyncSession, user: User) -> User:
    """Insert a user (raises ``IntegrityError`` when the e-mail is taken)."""
    session.add(user)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, user_id: str) -> None:
    """Delete a user and everything that hangs off it."""
    await session.execute(delete(UserOrganization).where(UserOrganization.user_id == user_id))
    session_ids = select(Session.id).where(Session.user_id == user_id)
    await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(session_ids)))
    await session.execute(delete(Session).where(Session.user_id == user_id))
    await session.execute(delete(User).where(User.id == user_id))


def users_query(*, organization_id: str | None, condition: ColumnElement[bool] | None) -> Select[User]:
    """Users, unordered, for a keyset page (:func:`mesh.kit.paging.keyset_page`).

    Args:
        organization_id: only members of this organisation; ``None`` for every user.
        condition: the compiled filter, if any.

    """
    query = select(User)
    if organization_id is not None:
        members = select(UserOrganization.user_id).where(UserOrganization.organization_id == organization_id)
        query = query.where(User.id.in_(members))
    return query if condition is None else query.where(condition)


async def user_organizations(session: AsyncSession, user_id: str) -> list[UserOrganization]:
    """The organisations identity knows the user to be a member of."""
    query = select(UserOrganization).where(UserOrganization.user_id == user_id)
    return list((await session.execute(query.order_by(UserOrganization.learn_time))).scalars())


async def is_member(session: AsyncSession, user_id: str, organization_id: str) -> bool:
    """Whether identity knows the user to be a member of the organisation."""
    query = select(
        exists().where(UserOrganization.user_id == user_id, UserOrganization.organization_id == organization_id)
    )
    return bool((await session.execute(query)).scalar())


async def remember_memberships(
    session: AsyncSession, user_id: str, memberships: Sequence[Membership], now: dt.datetime, *, complete: bool
) -> None:
    """Record the user's memberships as team_hub reported them.

    Args:
        session: the session.
        user_id: the user.
        memberships: memberships to record.
        now: when they were learnt.
        complete: the list is every active membership: forget the organisations missing from it.

    """
    known = {row.organization_id: row for row in await user_organizations(session, user_id)}
    for membership in memberships:
        row = known.pop(membership.organization_id, None)
        if row is None:
            session.add(
                UserOrganization(
                    user_id=user_id,
                    organization_id=membership.organization_id,
                    role=membership.role,
                    member=membership.member,
                    learn_time=now,
                )
            )
        else:
            row.role, row.member = membership.role, membership.member or row.member
    if complete:
        for row in known.values():
            await session.delete(row)
    await session.flush()


async def forget_membership(session: AsyncSession, user_id: str, organization_id: str) -> None:
    """Forget that the user is a member of the organisation (they were removed)."""
    await session.execute(
        delete(UserOrganization).where(
            UserOrganization.user_id == user_id, UserOrganization.organization_id == organization_id
        )
    )


async def add_session(session: AsyncSession, row: Session) -> Session:
    """Insert a session."""
    session.add(row)
    await session.flush()
    return row


async def get_session(session: AsyncSession, session_id: str) -> Session | None:
    """The session with this id."""
    return (await session.execute(select(Session).where(Session.id == session_id))).scalar_one_or_none()


async def signed_in_from(session: AsyncSession, user_id: str, address: str, since: dt.datetime) -> bool:
    """Whether the user has a session opened or refreshed from this address since ``since``.

    Asked for unknown accounts too (``user_id`` ``""`` matches nothing), so that both take one query.
    """
    query = select(
        exists().where(
            Session.user_id == user_id, Session.client_address == address, Session.last_refresh_time >= since
        )
    )
    return bool(address) and bool((await session.execute(query)).scalar())


def open_sessions_query(*, user_id: str, now: dt.datetime, organization_id: str | None = None) -> Select[Session]:
    """The user's sessions that are neither revoked nor expired, unordered."""
    query = select(Session).where(Session.user_id == user_id, Session.revoke_time.is_(None), Session.expire_time > now)
    return query if organization_id is None else query.where(Session.organization_id == organization_id)


async def open_sessions(
    session: AsyncSession, *, user_id: str, now: dt.datetime, organization_id: str | None = None
) -> list[Session]:
    """The user's open sessions, most recently refreshed first."""
    query = open_sessions_query(user_id=user_id, now=now, organization_id=organization_id)
    ordered = query.order_by(Session.last_refresh_time.desc(), Session.id.desc())
    return list((await session.execute(ordered)).scalars())


async def organization_sessions(session: AsyncSession, organization_id: str, now: dt.datetime) -> list[Session]:
    """Every open session for one organisation (any user)."""
    query = select(Session).where(
        Session.organization_id == organization_id, Session.revoke_time.is_(None), Session.expire_time > now
    )
    return list((await session.execute(query)).scalars())


async def add_refresh_token(
    session: AsyncSession, token_hash: str, session_id: str, now: dt.datetime, expire_time: dt.datetime
) -> None:
    """Store a refresh token by its hash."""
    session.add(RefreshToken(token_hash=token_hash, session_id=session_id, create_time=now, expire_time=expire_time))
    await session.flush()


async def find_refresh_token(session: AsyncSession, token_hash: str) -> tuple[RefreshToken, Session] | None:
    """A refresh token and its session, by the token's hash."""
    query = select(RefreshToken, Session).join(Session, Session.id == RefreshToken.session_id)
    row = (await session.execute(query.where(RefreshToken.token_hash == token_hash))).first()
    return None if row is None else (row[0], row[1])


async def spend_refresh_token(session: AsyncSession, token_hash: str, now: dt.datetime) -> bool:
    """Mark a refresh token used, atomically: ``False`` when someone spent it first."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_time.is_(None))
        .values(used_time=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def prune_refresh_tokens(session: AsyncSession, now: dt.datetime) -> None:
    """Delete refresh tokens past their expiry (their session has ended anyway)."""
    await session.execute(delete(RefreshToken).where(RefreshToken.expire_time <= now))
