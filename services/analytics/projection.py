"""``event_counts``: how many events of each type every organisation recorded per UTC day.

The first analytics read model built from the log; every event type counts, so it works
before the call and campaign events the other projections need exist. Counting is not
idempotent by itself (unlike an upsert): the runner's event-id record is what keeps a
redelivered event from being counted twice, which is what its tests check.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit.projections import ProjectedEvent
from services.analytics.models import EventCountRow


class EventCountsProjection:
    """Events per (organisation, type, day)."""

    name = "event_counts"
    description = "Events recorded per organisation, event type and UTC day."
    event_type_prefixes: tuple[str, ...] = ()
    schema_version = 1

    async def apply(self, session: AsyncSession, event: ProjectedEvent, generation: int) -> None:
        """Add one to the event's (organisation, type, day)."""
        key = (generation, event.organization_id, event.type, event.occur_time.date().isoformat())
        row = await session.get(EventCountRow, key)
        if row is None:
            session.add(
                EventCountRow(generation=key[0], organization_id=key[1], event_type=key[2], day=key[3], count=1)
            )
        else:
            row.count += 1

    async def clear(self, session: AsyncSession, generation: int) -> None:
        """Delete one copy."""
        await session.execute(delete(EventCountRow).where(EventCountRow.generation == generation))
