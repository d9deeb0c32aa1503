"""Resource names read from the contract's ``google.api.resource`` patterns (AIP-122).

``ResourceName.for_message(agent_pb2.Agent)`` reads the pattern the proto declares
(``organizations/{organization}/agents/{agent}``); :meth:`ResourceName.parse` and
:meth:`ResourceName.format` then work from it, so no service hand-writes a name parser.
A variable's value is an id (:mod:`mesh.kit.ids`) or, for nested numbered resources,
any short segment of ``[A-Za-z0-9_-]``; ``-`` (AIP-159, "every organisation") is accepted
only where the caller asks for it, by :meth:`ResourceName.parse_parent`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from typing import Any

from google.api import resource_pb2
from google.protobuf import message

from mesh.errors import InvalidArgument

WILDCARD = "-"
ORGANIZATION = "organization"

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_VARIABLE = re.compile(r"^\{([a-z][a-z0-9_]*)\}$")
_LITERAL = re.compile(r"^[a-z][a-z0-9_]*$")
_RESOURCE: Any = resource_pb2.resource


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedName:
    """A resource name split into its variables.

    Attributes:
        name: the name as given.
        values: variable → value (``{"organization": "acme", "agent": "support"}``).

    """

    name: str
    values: Mapping[str, str]

    @property
    def organization(self) -> str:
        """The ``{organization}`` variable (``""`` for a platform-global resource)."""
        return self.values.get(ORGANIZATION, "")

    def __getitem__(self, variable: str) -> str:
        return self.values[variable]


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceName:
    """One resource pattern, such as ``organizations/{organization}/agents/{agent}``.

    Attributes:
        resource_type: the resource type (``vocelio.com/Agent``).
        pattern: the pattern.
        segments: the pattern split on ``/``.

    """

    resource_type: str
    pattern: str
    segments: tuple[str, ...]

    @classmethod
    def for_message(cls, message_class: type[message.Message] | message.Message, index: int = 0) -> ResourceName:
        """The pattern a message declares with ``google.api.resource`` (the first, unless ``index``).

        Raises:
            ValueError: the message declares no resource, or that many patterns.

        """
        descriptor: Any = message_class.DESCRIPTOR
        return _for_descriptor(descriptor.full_name, descriptor, index)

    @classmethod
    def from_pattern(cls, pattern: str, resource_type: str = "") -> ResourceName:
        """A pattern given as text (tests and platform-global helpers).

        Raises:
            ValueError: the pattern is not alternating literal and ``{variable}`` segments.

        """
        segments = tuple(pattern.split("/"))
        for index, segment in enumerate(segments):
            expected = _VARIABLE if index % 2 else _LITERAL
            singleton_tail = index == len(segments) - 1 and index % 2 == 0 and index > 0
            if not expected.fullmatch(segment) and not (singleton_tail and _LITERAL.fullmatch(segment)):
                raise ValueError(f"{pattern!r} is not a resource pattern (segment {segment!r})")
        return cls(resource_type, pattern, segments)

    @property
    def variables(self) -> tuple[str, ...]:
        """The pattern's variables in order (``("organization", "agent")``)."""
        return tuple(match.group(1) for segment in self.segments if (match := _VARIABLE.fullmatch(segment)))

    @property
    def id_variable(self) -> str:
        """The last variable: the resource's own id (``agent``)."""
        return self.variables[-1]

    @property
    def collection(self) -> str:
        """The collection id (``agents``), or the singleton's name (``compliance_policy``)."""
        return self.segments[-2] if _VARIABLE.fullmatch(self.segments[-1]) else self.segments[-1]

    @property
    def parent_pattern(self) -> str:
        """The pattern of the parent (``organizations/{organization}``; ``""`` at the top)."""
        cut = 2 if _VARIABLE.fullmatch(self.segments[-1]) else 1
        return "/".join(self.segments[:-cut])

    @property
    def is_organization_scoped(self) -> bool:
        """Whether names start with ``organizations/{organization}``."""
        return self.segments[:2] == ("organizations", "{organization}") and len(self.segments) > 2

    def format(self, **values: str) -> str:
        """The name with every variable filled in (``format(organization="acme", agent="support")``).

        Raises:
            ValueError: a variable is missing, extra, or not a valid segment.

        """
        if set(values) != set(self.variables):
            raise ValueError(f"{self.pattern} needs exactly {', '.join(self.variables)}; got {', '.join(values)}")
        parts = []
        for segment in self.segments:
            match = _VARIABLE.fullmatch(segment)
            if match is None:
                parts.append(segment)
                continue
            value = values[match.group(1)]
            if not _SEGMENT.fullmatch(value):
                raise ValueError(f"{value!r} is not a valid {match.group(1)} id")
            parts.append(value)
        return "/".join(parts)

    def parse(self, name: str, *, field: str = "name") -> ParsedName:
        """The variables of a name of this pattern.

        Raises:
            InvalidArgument: the name is empty or has another shape; the violation names ``field``.

        """
        values = _match(self.segments, name, allow_wildcard=False)
        if values is None:
            problem = "is required" if not name else f"must look like {self.pattern}"
            raise InvalidArgument(f"{field} {problem}", {field: problem})
        return ParsedName(name, values)

    def parse_parent(self, parent: str, *, field: str = "parent", allow_wildcard: bool = True) -> ParsedName:
        """The variables of a ``parent`` of this pattern's collection (``organizations/acme``).

        With ``allow_wildcard``, ``organizations/-`` (AIP-159) parses, its organisation being
        :data:`WILDCARD`; whether the caller may use it is :mod:`mesh.kit.tenancy`'s business.

        Raises:
            InvalidArgument: the parent is empty or has another shape.

        """
        segments = tuple(self.parent_pattern.split("/")) if self.parent_pattern else ()
        values = _match(segments, parent, allow_wildcard=allow_wildcard) if segments else None
        if values is None:
            shape = self.parent_pattern or "(no parent)"
            problem = "is required" if not parent else f"must look like {shape}"
            raise InvalidArgument(f"{field} {problem}", {field: problem})
        return ParsedName(parent, values)

    def parent_of(self, values: Mapping[str, str]) -> str:
        """The parent name of a resource with these variables (``organizations/acme``)."""
        parent = ResourceName.from_pattern(self.parent_pattern) if self.parent_pattern else None
        if parent is None:
            return ""
        return parent.format(**{variable: values[variable] for variable in parent.variables})


@functools.cache
def _for_descriptor(full_name: str, descriptor: Any, index: int) -> ResourceName:
    options = descriptor.GetOptions()
    if not options.HasExtension(_RESOURCE):
        raise ValueError(f"{full_name} declares no google.api.resource")
    resource = options.Extensions[_RESOURCE]
    if index >= len(resource.pattern):
        raise ValueError(f"{full_name} declares {len(resource.pattern)} pattern(s), not {index + 1}")
    return ResourceName.from_pattern(resource.pattern[index], resource.type)


def _match(segments: tuple[str, ...], name: str, *, allow_wildcard: bool) -> dict[str, str] | None:
    parts = name.split("/")
    if len(parts) != len(segments):
        return None
    values: dict[str, str] = {}
    for segment, part in zip(segments, parts, strict=True):
        match = _VARIABLE.fullmatch(segment)
        if match is None:
            if part != segment:
                return None
            continue
        wildcard = allow_wildcard and part == WILDCARD and match.group(1) == ORGANIZATION
        if not wildcard and not _SEGMENT.fullmatch(part):
            return None
        values[match.group(1)] = part
    return values
