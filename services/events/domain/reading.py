"""Rules of reads: page sizes, filters, where a read starts and what "archived" means.

Truncation and retention differ on purpose. Truncation (TruncateEventStream, a deletion)
*hides* versions below ``first_readable_version``: a read that starts lower silently starts
there, as the contract says. Retention *archives* old events; a read that names a version
or position inside the archived range fails with OUT_OF_RANGE ``EVENTS_ARCHIVED`` and the
first readable version or position in the message and metadata, so a consumer never
mistakes "archived" for "nothing happened". A read that names no start begins at the
first readable event (the log's start has moved).
"""

from __future__ import annotations

import dataclasses

from mesh.errors import InvalidArgument, OutOfRange
from services.events.domain.appends import REASONS
from vocelio.events.v1 import event_pb2, events_errors_pb2

DEFAULT_READ = 100
MAX_READ = 1000
MAX_PREFIXES = 20


def read_count(requested: int) -> int:
    """``max_count``: 0 means 100, at most 1,000.

    Raises:
        InvalidArgument: negative or above 1,000.

    """
    if requested == 0:
        return DEFAULT_READ
    if not 1 <= requested <= MAX_READ:
        raise InvalidArgument("max_count must be 1 to 1000", {"max_count": "must be 1 to 1000 (0 means 100)"})
    return requested


@dataclasses.dataclass(frozen=True, slots=True)
class Filter:
    """An :class:`EventFilter`, checked. An event matches when it matches one entry of every non-empty list.

    Attributes:
        type_prefixes: ``"call."`` matches every ``call.*`` type; a prefix without a trailing dot
            matches that type and its sub-types (``call.completed`` and ``call.completed.x``).
        stream_prefixes: plain prefixes of stream ids (``"call-"``).

    """

    type_prefixes: tuple[str, ...] = ()
    stream_prefixes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Matches everything."""
        return not self.type_prefixes and not self.stream_prefixes

    def matches(self, event_type: str, stream_id: str) -> bool:
        """Whether an event matches (the same rule the store's SQL applies)."""
        types = not self.type_prefixes or any(_type_matches(p, event_type) for p in self.type_prefixes)
        streams = not self.stream_prefixes or any(stream_id.startswith(p) for p in self.stream_prefixes)
        return types and streams


def _type_matches(prefix: str, event_type: str) -> bool:
    if prefix.endswith("."):
        return event_type.startswith(prefix)
    return event_type == prefix or event_type.startswith(prefix + ".")


def parse_filter(message: event_pb2.EventFilter, *, field: str = "event_filter") -> Filter:
    """The checked filter.

    Raises:
        InvalidArgument: more than 20 entries in a list, or an empty entry.

    """
    problems: dict[str, str] = {}
    for name, values in (("event_type_prefixes", message.event_type_prefixes),
                         ("stream_prefixes", message.stream_prefixes)):  # fmt: skip
        if len(values) > MAX_PREFIXES:
            problems[f"{field}.{name}"] = f"at most {MAX_PREFIXES} prefixes"
        elif any(not value or len(value) > 200 for value in values):
            problems[f"{field}.{name}"] = "prefixes must be 1 to 200 characters"
    if problems:
        raise InvalidArgument(f"invalid {field}: {', '.join(sorted(problems))}", problems)
    return Filter(tuple(message.event_type_prefixes), tuple(message.stream_prefixes))


def archived_position_error(position: int, archived_position: int) -> OutOfRange:
    """A global read or subscription starting inside the archived range."""
    first = archived_position + 1
    return OutOfRange(
        f"events up to global position {archived_position} are archived (retention); position {position} "
        f"cannot be read: the first readable position is {first}"
    ).with_reason(REASONS, events_errors_pb2.ERROR_REASON_EVENTS_ARCHIVED, {"first_readable_position": str(first)})


def archived_version_error(name: str, version: int, archived_version: int) -> OutOfRange:
    """A stream read or subscription starting inside the stream's archived range."""
    return OutOfRange(
        f"versions of {name} below {archived_version} are archived (retention); version {version} "
        f"cannot be read: the first readable version is {archived_version}"
    ).with_reason(
        REASONS, events_errors_pb2.ERROR_REASON_EVENTS_ARCHIVED, {"first_readable_version": str(archived_version)}
    )


def check_position(position: int, archived_position: int) -> None:
    """Refuse a global start (the first position to read) that lies in the archived range.

    Raises:
        OutOfRange: ``EVENTS_ARCHIVED``.

    """
    if archived_position and position <= archived_position:
        raise archived_position_error(position, archived_position)


def check_version(name: str, version: int, first_readable: int, archived_version: int) -> None:
    """Refuse a stream start in the archived (not merely truncated) range.

    Raises:
        OutOfRange: ``EVENTS_ARCHIVED``.

    """
    if version < archived_version and version >= first_readable:
        raise archived_version_error(name, version, archived_version)
