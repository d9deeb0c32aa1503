"""The widgets table (created from the metadata by the harness: a test service has no migrations)."""

from __future__ import annotations

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mesh.kit.sql import JsonDocument, Revisioned


class Base(DeclarativeBase):
    """The kit demo's declarative base."""


class WidgetRow(Revisioned, Base):
    """A widget, keyed per organisation."""

    __tablename__ = "widgets"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    colour: Mapped[str] = mapped_column(String(20))
    labels: Mapped[dict[str, str]] = mapped_column(JsonDocument)

    __table_args__ = (Index("ix_widgets_listing", "organization_id", "create_time", "id"),)
