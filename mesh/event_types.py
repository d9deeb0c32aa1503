"""The registry of domain event types, derived from the contracts.

Every message that carries ``(vocelio.api.v1.event)`` is the typed payload of one event
type (``agent.created`` → ``vocelio.agents.v1.AgentCreatedEvent``). This module reads them
from the descriptor set that ``make proto`` writes, exactly as :mod:`mesh.registry` reads the
services, so an event type is declared once, in its service's ``<service>_events.proto``,
and nowhere else.

The stored form of a payload is its proto3 JSON object (``Event.data`` is a
``google.protobuf.Struct``; the outbox keeps the same object as JSON text): lowerCamel field
names, 64-bit integers as decimal strings, default values omitted — the shapes REST clients
and webhook receivers see. :meth:`EventTypes.encode` turns a typed message into
``(type, data_schema, data)``; :meth:`EventTypes.decode` turns a stored payload back into the
typed message, refusing unknown types, a mismatched schema and fields the message lacks;
:meth:`EventTypes.check` gives the same verdict on a ``Struct`` without building the message
(:mod:`mesh.payload_check`, an order of magnitude faster), for the event store's appends.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import importlib
import json
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    json_format,
    message,
    message_factory,
    struct_pb2,
)

from mesh import payload_check
from mesh.errors import InvalidArgument
from mesh.registry import default_descriptor_set
from vocelio.api.v1 import event_pb2

# The generated stubs type extensions loosely; this is the typed handle.
_EVENT_OPTION: Any = event_pb2.event
_MESSAGE_TYPE_FIELD = descriptor_pb2.FileDescriptorProto.MESSAGE_TYPE_FIELD_NUMBER


class EventRegistryError(ValueError):
    """The contracts declare event types inconsistently (a type declared twice, a bad package)."""


class UnknownEventType(InvalidArgument):
    """An event type (or payload message) that no contract declares."""

    def __init__(self, message_text: str, field: str) -> None:
        super().__init__(message_text, {field: message_text})


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    """One event type as the contracts declare it.

    Attributes:
        type: ``<resource>.<past_tense_verb>`` (``call.completed``).
        data_schema: full name of the payload message (``vocelio.call_center.v1.CallCompletedEvent``).
        service: short name of the producing service (``call_center``), the payload's package segment.
        resource_type: the ``google.api.resource`` type the event concerns (``vocelio.com/Call``).
        description: the payload message's leading comment, for catalogues.
        message_class: the generated message class of the payload.

    """

    type: str
    data_schema: str
    service: str
    resource_type: str
    description: str
    message_class: builtins.type[message.Message]

    @property
    def group(self) -> str:
        """The type's first segment (``call``); webhooks subscribe to ``call.*`` with it."""
        return self.type.split(".", 1)[0]

    @property
    def descriptor(self) -> Any:
        """The payload message's ``Descriptor`` (of the generated pool)."""
        return self.message_class.DESCRIPTOR


class EncodedEvent(NamedTuple):
    """A payload in its stored form, as an outbox writer records it.

    Attributes:
        type: the event type (``agent.created``).
        data_schema: the payload message's full name.
        data: the proto3 JSON object of the payload (JSON-serialisable; a ``Struct`` as is).

    """

    type: str
    data_schema: str
    data: dict[str, Any]


class EventTypes:
    """Every declared event type, looked up by type or by payload message."""

    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        pool = descriptor_pool.DescriptorPool()
        for file in files:
            pool.Add(file)
        by_type: dict[str, EventType] = {}
        for file in files:
            if not file.package.startswith("vocelio."):
                continue
            comments = {
                loc.path[1]: loc.leading_comments
                for loc in file.source_code_info.location
                if len(loc.path) == 2 and loc.path[0] == _MESSAGE_TYPE_FIELD
            }
            for index, proto in enumerate(file.message_type):
                found = pool.FindMessageTypeByName(f"{file.package}.{proto.name}")
                options = found.GetOptions()
                if not options.HasExtension(_EVENT_OPTION):
                    continue
                info = options.Extensions[_EVENT_OPTION]
                if info.type in by_type:
                    raise EventRegistryError(
                        f"event type {info.type!r} is declared twice: by {by_type[info.type].data_schema} "
                        f"and by {found.full_name}"
                    )
                by_type[info.type] = EventType(
                    type=info.type,
                    data_schema=found.full_name,
                    service=_service_of(file.package, found.full_name),
                    resource_type=info.resource_type,
                    description=" ".join(comments.get(index, "").split()),
                    message_class=_generated_class(file.name, found.full_name),
                )
        self.types: tuple[EventType, ...] = tuple(sorted(by_type.values(), key=lambda e: e.type))
        self._by_type = by_type
        self._by_schema = {e.data_schema: e for e in self.types}
        self._checkers: dict[str, payload_check.PayloadChecker] = {}

    @classmethod
    def from_descriptor_set(cls, path: pathlib.Path) -> EventTypes:
        """Build the registry from a ``FileDescriptorSet`` file with source info (``make proto``)."""
        return cls(list(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file))

    def __iter__(self) -> Iterator[EventType]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._by_type

    def get(self, event_type: str) -> EventType:
        """The declared event type.

        Raises:
            UnknownEventType: no contract declares it (``INVALID_ARGUMENT``, field ``type``).

        """
        found = self._by_type.get(event_type)
        if found is None:
            raise UnknownEventType(f"unknown event type {event_type!r}: no contract declares it", "type")
        return found

    def of_message(self, payload: message.Message | type[message.Message]) -> EventType:
        """The event type whose payload is this message (or message class).

        Raises:
            UnknownEventType: the message carries no ``(vocelio.api.v1.event)`` option.

        """
        name = payload.DESCRIPTOR.full_name
        found = self._by_schema.get(name)
        if found is None:
            raise UnknownEventType(f"{name} is not an event payload: it has no (vocelio.api.v1.event) option", "data")
        return found

    def by_service(self, service: str) -> tuple[EventType, ...]:
        """The event types one service produces, by type."""
        return tuple(e for e in self.types if e.service == service)

    def encode(self, payload: message.Message) -> EncodedEvent:
        """The stored form of a typed payload: ``(type, data_schema, data)``.

        Raises:
            UnknownEventType: the message is not a declared event payload.

        """
        found = self.of_message(payload)
        return EncodedEvent(found.type, found.data_schema, json_format.MessageToDict(payload))

    def check(self, event_type: str, data_schema: str, data: struct_pb2.Struct) -> str | None:
        """Why a stored payload is not the proto3 JSON of its type's message, or ``None``.

        The verdict of :meth:`decode` (which builds the message) without building it: field
        names (JSON and proto), unknown fields, kinds and ranges, enums, nesting, oneofs, and the
        well-known types, walked straight on the ``Struct`` (see :mod:`mesh.payload_check`).

        Args:
            event_type: the event's type (``agent.created``).
            data_schema: the schema recorded with the event; checked unless empty.
            data: the payload as a ``Struct``.

        Returns:
            ``None`` when :meth:`decode` would accept it, else the problem with its field path
            (``agent.state: 'NOPE' is not a vocelio.agents.v1.AgentState name``).

        Raises:
            UnknownEventType: no contract declares the type.
            InvalidArgument: the schema does not match the type.

        """
        checker = self._checkers.get(event_type)
        if checker is None or (data_schema and data_schema != checker.full_name):
            found = self._schema_checked(event_type, data_schema)
            checker = self._checkers[event_type] = payload_check.checker_for(found.descriptor)
        return checker(data)

    def decode(
        self, event_type: str, data_schema: str, data: Mapping[str, Any] | struct_pb2.Struct | str | bytes
    ) -> message.Message:
        """The typed payload of a stored event: the inverse of :meth:`encode` (``decode(*encode(m)) == m``).

        Args:
            event_type: the event's type (``agent.created``).
            data_schema: the schema recorded with the event; checked unless empty (rows
                written before events were typed carry none).
            data: the payload as stored: a JSON object (mapping, ``Struct`` or JSON text).

        Raises:
            UnknownEventType: no contract declares the type.
            InvalidArgument: the schema does not match the type, or the data is not the
                proto3 JSON of the type's message (unknown fields included).

        """
        found = self._schema_checked(event_type, data_schema)
        if isinstance(data, struct_pb2.Struct):
            data = json_format.MessageToDict(data)
        elif isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as error:
                raise InvalidArgument("event data is not JSON", {"data": str(error)}) from None
        if not isinstance(data, Mapping):
            raise InvalidArgument("event data must be a JSON object", {"data": "not an object"})
        result: message.Message = found.message_class()
        try:
            json_format.ParseDict(dict(data), result)
        except json_format.ParseError as error:
            raise InvalidArgument(f"event data is not a {found.data_schema}", {"data": str(error)[:300]}) from None
        return result

    def _schema_checked(self, event_type: str, data_schema: str) -> EventType:
        found = self.get(event_type)
        if data_schema and data_schema != found.data_schema:
            raise InvalidArgument(
                f"data_schema {data_schema!r} does not match event type {event_type!r}",
                {"data_schema": f"{event_type} carries {found.data_schema}"},
            )
        return found


@functools.cache
def default_event_types() -> EventTypes:
    """The event types of the generated contracts (cached per process)."""
    return EventTypes.from_descriptor_set(default_descriptor_set())


def encode(payload: message.Message) -> EncodedEvent:
    """Encode with the generated contracts' registry; unpacks as ``type, data_schema, data``."""
    return default_event_types().encode(payload)


def decode(
    event_type: str, data_schema: str, data: Mapping[str, Any] | struct_pb2.Struct | str | bytes
) -> message.Message:
    """Decode with the generated contracts' registry (see :meth:`EventTypes.decode`)."""
    return default_event_types().decode(event_type, data_schema, data)


def _service_of(package: str, full_name: str) -> str:
    parts = package.split(".")
    if len(parts) != 3 or parts[0] != "vocelio" or parts[1] in ("api", "common"):
        raise EventRegistryError(f"{full_name}: event payloads belong to a service package, not {package}")
    return parts[1]


def _generated_class(file_name: str, full_name: str) -> type[message.Message]:
    """The generated class of a message, so decoded payloads equal the ones producers build."""
    importlib.import_module(file_name.removesuffix(".proto").replace("/", ".") + "_pb2")
    found = descriptor_pool.Default().FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(found)
