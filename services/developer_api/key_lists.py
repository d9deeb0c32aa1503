"""ListApiKeys: filter, state selection and keyset pagination.

``state`` is applied in SQL (with expiry taken into account); the other fields
(environment, key_type, prefix, display_name, scopes, labels) are matched on the rows as
they stream out in batches, so a page is always full unless the list is exhausted.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from mesh.errors import InvalidArgument
from services.developer_api import convert, store
from services.developer_api.domain import KeyState
from services.developer_api.listing import (
    EQUALITY,
    HAS,
    Condition,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_filter,
    query_fingerprint,
)
from services.developer_api.models import ApiKeyRow, utc
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

FIELDS = {
    "state": EQUALITY,
    "environment": EQUALITY,
    "key_type": EQUALITY,
    "prefix": EQUALITY,
    "display_name": EQUALITY,
    "scopes": HAS,
    "labels.": EQUALITY | HAS,
}
_ENUM_PREFIXES = {"state": "API_KEY_STATE_", "environment": "API_KEY_ENVIRONMENT_", "key_type": "API_KEY_TYPE_"}
_ENUM_VALUES = {
    "state": {s.value for s in KeyState},
    "environment": {"LIVE", "TEST"},
    "key_type": {"SECRET", "PUBLISHABLE"},
}


def _normalized(condition: Condition) -> Condition:
    prefix = _ENUM_PREFIXES.get(condition.field)
    if prefix is None:
        return condition
    value = condition.value.upper().removeprefix(prefix)
    if value not in _ENUM_VALUES[condition.field]:
        raise InvalidArgument(
            f"{condition.value!r} is not a {condition.field}",
            {"filter": f"{condition.field} is one of {', '.join(sorted(_ENUM_VALUES[condition.field]))}"},
        )
    return Condition(condition.field, condition.op, value)


def selected_states(conditions: Sequence[Condition], show_inactive: bool) -> set[KeyState]:
    """The states to list: ACTIVE only, every state with show_inactive, or what the filter says."""
    states = set(KeyState) if show_inactive else {KeyState.ACTIVE}
    named = [c for c in conditions if c.field == "state"]
    if named:
        states = set(KeyState)
    for condition in named:
        chosen = {KeyState(condition.value)}
        states = states & chosen if condition.op == "=" else states - chosen
    return states


def matches(row: ApiKeyRow, conditions: Sequence[Condition]) -> bool:
    """Whether a key meets the non-state conditions of a filter."""
    for condition in conditions:
        if condition.field == "state":
            continue
        if condition.field == "scopes":
            held = convert.scopes_of(row)
            if condition.value not in held and "*" not in held:
                return False
            continue
        if condition.field.startswith("labels."):
            labels = convert.labels_of(row)
            label = condition.field.removeprefix("labels.")
            if condition.op == ":":
                ok = label in labels
            else:
                ok = (labels.get(label) == condition.value) == (condition.op == "=")
            if not ok:
                return False
            continue
        value = getattr(row, condition.field)
        if (value == condition.value) != (condition.op == "="):
            return False
    return True


async def list_api_keys(
    session: AsyncSession, organization_id: str | None, request: pb.ListApiKeysRequest, now: datetime.datetime
) -> tuple[list[ApiKeyRow], str]:
    """One page of keys, newest first, and the next page token.

    Raises:
        InvalidArgument: a bad filter, page size or page token.

    """
    size = page_size(request.page_size, default=50, maximum=100)
    conditions = [_normalized(c) for c in parse_filter(request.filter, FIELDS)]
    states = selected_states(conditions, request.show_inactive)
    fingerprint = query_fingerprint("api_keys", request.parent, request.filter, request.show_inactive)
    position = decode_page_token(request.page_token, fingerprint)
    after: tuple[datetime.datetime, str] | None = None
    if position is not None:
        try:
            after = (datetime.datetime.fromisoformat(position[0]), str(position[1]))
        except (ValueError, IndexError, TypeError):
            raise InvalidArgument("invalid page_token", {"page_token": "use a next_page_token as returned"}) from None
    found: list[ApiKeyRow] = []
    batch = max(size * 2, 50)
    while len(found) <= size:
        rows = await store.list_keys(session, organization_id, states=states, now=now, after=after, limit=batch)
        found.extend(row for row in rows if matches(row, conditions))
        if len(rows) < batch:
            break
        after = (rows[-1].create_time, rows[-1].id)
    page = found[:size]
    if len(found) <= size:
        return page, ""
    last = page[-1]
    return page, encode_page_token([utc(last.create_time).isoformat(), last.id], fingerprint)
