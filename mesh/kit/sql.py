"""SQL helpers every service's tables use: UTC times, JSON documents, revisions, conflict mapping.

- :class:`UtcDateTime`: the one timezone-aware UTC column type (``timestamptz`` on
  PostgreSQL; naive-UTC on SQLite, made aware again on the way out).
- :data:`JsonDocument`: JSONB on PostgreSQL, JSON text on SQLite.
- :class:`Revisioned`: ``create_time``, ``update_time``, ``revision`` (SQLAlchemy's
  optimistic lock: every UPDATE bumps and checks it), ``creator`` and ``last_modifier``; it
  gives the resource's etag and ``AuditInfo``.
- :func:`flush`: flush now, so conflicts surface as domain errors where they happen
  (unique → ALREADY_EXISTS, foreign key → FAILED_PRECONDITION, stale revision → ABORTED) on
  SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime
from typing import Any

from google.protobuf import timestamp_pb2
from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.types import TypeDecorator

from mesh.errors import Aborted, AlreadyExists, FailedPrecondition, VocelioError
from mesh.kit import etags
from vocelio.common.v1 import audit_pb2

# SQLSTATE classes (PostgreSQL) and message prefixes (SQLite) of the two conflicts we map.
_UNIQUE_STATES = frozenset({"23505"})
_FOREIGN_KEY_STATES = frozenset({"23503"})
_SQLITE_UNIQUE = ("UNIQUE constraint failed", "PRIMARY KEY must be unique")
_SQLITE_FOREIGN_KEY = ("FOREIGN KEY constraint failed",)


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    Binding refuses naive datetimes and converts to UTC; reading always returns UTC-aware
    datetimes. This is the one place where that normalisation happens.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime.datetime | None, dialect: Dialect) -> datetime.datetime | None:
        """UTC on the way in (naive on SQLite, which would otherwise drop the offset unconverted)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC times")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        """UTC-aware on the way out."""
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value.astimezone(datetime.UTC)


# JSONB on PostgreSQL (indexable, compared by value), JSON text on SQLite.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


def timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    """A protobuf ``Timestamp`` of an aware datetime."""
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(moment)
    return result


class Revisioned:
    """Mixin: creation and change times, who made them, and an optimistic-locking revision.

    ``revision`` starts at 1 and SQLAlchemy bumps it on every UPDATE, which also checks that
    nobody else bumped it first (a :class:`~sqlalchemy.orm.exc.StaleDataError`, which
    :func:`flush` turns into ABORTED).
    """

    revision: Mapped[int] = mapped_column(Integer)
    creator: Mapped[str] = mapped_column(String(200))
    last_modifier: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    update_time: Mapped[datetime.datetime] = mapped_column(UtcDateTime())

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.revision}  # type: ignore[attr-defined]

    def stamp_created(self, actor: str, now: datetime.datetime) -> None:
        """Fill the audit columns of a new row."""
        self.creator = actor
        self.last_modifier = actor
        self.create_time = now
        self.update_time = now

    def stamp_changed(self, actor: str, now: datetime.datetime) -> None:
        """Record a change (the revision goes up when the row is flushed)."""
        self.last_modifier = actor
        self.update_time = now

    def etag_for(self, name: str) -> str:
        """The resource's etag (:func:`mesh.kit.etags.etag`) at its current revision."""
        return etags.etag(name, self.create_time, self.revision)

    def audit_info(self) -> audit_pb2.AuditInfo:
        """The ``vocelio.common.v1.AuditInfo`` of the row."""
        return audit_pb2.AuditInfo(
            create_time=timestamp(self.create_time),
            update_time=timestamp(self.update_time),
            creator=self.creator,
            last_modifier=self.last_modifier,
        )


def conflict_kind(error: IntegrityError) -> str:
    """``"unique"``, ``"foreign_key"`` or ``"other"``: what kind of constraint an IntegrityError broke."""
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(getattr(original, "diag", None), "sqlstate", None)
    if state in _UNIQUE_STATES:
        return "unique"
    if state in _FOREIGN_KEY_STATES:
        return "foreign_key"
    text = str(original)
    if text.startswith(_SQLITE_UNIQUE):
        return "unique"
    if text.startswith(_SQLITE_FOREIGN_KEY):
        return "foreign_key"
    return "other"


async def flush(
    session: AsyncSession,
    *,
    exists: str | VocelioError | None = None,
    missing_reference: str | VocelioError | None = None,
    stale: str | VocelioError | None = None,
) -> None:
    """Flush pending changes, mapping conflicts to domain errors.

    Args:
        session: the transaction.
        exists: what a unique conflict means (a message for ALREADY_EXISTS, or the error to raise).
        missing_reference: what a foreign-key conflict means (FAILED_PRECONDITION message or error).
        stale: what a revision conflict means (ABORTED message or error).

    Raises:
        AlreadyExists, FailedPrecondition, Aborted: as mapped; an unmapped conflict propagates.

    """
    try:
        await session.flush()
    except IntegrityError as error:
        kind = conflict_kind(error)
        if kind == "unique" and exists is not None:
            raise _as_error(exists, AlreadyExists) from None
        if kind == "foreign_key" and missing_reference is not None:
            raise _as_error(missing_reference, FailedPrecondition) from None
        raise
    except StaleDataError:
        if stale is None:
            raise
        raise _as_error(stale, Aborted) from None


def _as_error(value: str | VocelioError, kind: type[VocelioError]) -> VocelioError:
    return value if isinstance(value, VocelioError) else kind(value)
