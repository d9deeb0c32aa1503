"""A test-only table built from the kit's SQL helpers (filters, flush mapping, revisions)."""

from __future__ import annotations

import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.filtering import FilterField, FilterSchema, Kind
from mesh.kit.sql import JsonDocument, Revisioned, UtcDateTime


class Base(DeclarativeBase):
    pass


class WidgetRow(Revisioned, Base):
    __tablename__ = "kit_widgets"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    seen_time: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class PartRow(Base):
    __tablename__ = "kit_parts"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    widget_id: Mapped[str] = mapped_column(String(63), ForeignKey("kit_widgets.id"))


SCHEMA: FilterSchema = {
    "display_name": FilterField(Kind.STRING, WidgetRow.display_name),
    "state": FilterField.enum(WidgetRow.state, {"NEW": "new", "USED": "used"}, prefix="WIDGET_STATE_"),
    "size": FilterField(Kind.INTEGER, WidgetRow.size),
    "active": FilterField(Kind.BOOLEAN, WidgetRow.active),
    "create_time": FilterField(Kind.TIMESTAMP, WidgetRow.create_time),
    "seen_time": FilterField(Kind.TIMESTAMP, WidgetRow.seen_time),
    "labels": FilterField(Kind.LABELS, WidgetRow.labels),
}


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)


def widget(widget_id: str, *, now: datetime.datetime, **values: object) -> WidgetRow:
    row = WidgetRow(
        id=widget_id,
        organization_id=str(values.get("organization_id", "acme")),
        display_name=str(values.get("display_name", widget_id)),
        state=str(values.get("state", "new")),
        size=int(values.get("size", 1)),  # type: ignore[call-overload]
        active=bool(values.get("active", True)),
        labels=dict(values.get("labels", {})),  # type: ignore[call-overload]
        seen_time=values.get("seen_time"),
        revision=1,
    )
    row.stamp_created("users/u1", now)
    return row
