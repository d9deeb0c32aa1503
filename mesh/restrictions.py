"""Where an API key's principal may act: client IP ranges, browser origins, agents, expiry.

:class:`KeyRestrictions` travels in :attr:`mesh.principal.Principal.restrictions`, for a
key used directly (from developer_api's ``VerifyApiKey``) and for a token minted from one
(the compact ``vocelio_restrictions`` claim), so the authenticator checks it on every call,
whether the principal came from its cache or not. Resource allow-lists (``allowed_agents``)
are checked by the services that own the resources, with :func:`allows` and
:func:`allowed_ids`; a resource outside the list answers exactly what a missing one answers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

# The claim that carries a key's restrictions in a token minted from it (identity's
# client_credentials grant). Short member names keep tokens small.
CLAIM = "vocelio_restrictions"
_CLAIM_MEMBERS = {"ip": "ip_ranges", "origin": "origins", "agents": "agents"}
# Agents are the only allow-listed resource kind today; the collection segment of their names.
AGENTS = "agents"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class MalformedRestrictions(ValueError):
    """A restrictions claim that is not what identity writes."""


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or ``None`` if it is not an origin."""
    parsed = urllib.parse.urlsplit(origin.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username or parsed.password:
        return None
    try:
        port = parsed.port
    except ValueError:
        return None
    host = parsed.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parsed.scheme]
    return f"{parsed.scheme}://{host}" + (f":{port}" if port and port != default else "")


def parse_client_address(value: str) -> IpAddress | None:
    """The IP in a client address: ``203.0.113.9``, ``2001:db8::1``, or gRPC peers ``ipv4:1.2.3.4:5``."""
    text = urllib.parse.unquote(value.strip())
    if text.startswith("ipv4:"):
        host, separator, port = text.removeprefix("ipv4:").rpartition(":")
        text = host if separator and port.isdigit() else text.removeprefix("ipv4:")
    text = text.removeprefix("ipv6:")
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # host:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they are IPv4 clients.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRestrictions:
    """Limits on a key's principal beyond its scopes; every non-empty list must match.

    Attributes:
        ip_ranges: client networks in CIDR form; empty allows any address.
        origins: normalised browser origins (``https://app.example.com``); empty allows any.
        agents: agent names (``organizations/{organization}/agents/{agent}``); empty allows
            every agent of the organisation.
        expires_at: seconds since the epoch after which the principal no longer works.

    """

    ip_ranges: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    expires_at: float | None = None
    _networks: tuple[IpNetwork, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            networks = tuple(ipaddress.ip_network(r, strict=False) for r in self.ip_ranges)
        except ValueError as error:
            raise MalformedRestrictions(f"not an IP range: {error}") from None
        object.__setattr__(self, "_networks", networks)

    @property
    def empty(self) -> bool:
        """Nothing is restricted."""
        return not (self.ip_ranges or self.origins or self.agents or self.expires_at is not None)

    def failure(self, client_address: str, origin: str, *, now: float | None = None) -> str | None:
        """Why a call from this address and origin is refused (for the log only), or ``None``.

        IP ranges fail closed: a key limited to ranges refuses a call whose address is
        unknown. Origins are checked when the call has one (browsers always send it;
        servers have none, and a publishable key's scopes are harmless from a server).
        """
        if self.expires_at is not None and (time.time() if now is None else now) >= self.expires_at:
            return "the key has expired"
        if self._networks:
            address = parse_client_address(client_address)
            if address is None:
                return "the key is limited to IP ranges and the client address is unknown"
            if not any(address.version == n.version and address in n for n in self._networks):
                return f"client address {address} is outside the key's IP ranges"
        if self.origins and origin and normalize_origin(origin) not in self.origins:
            return f"origin {origin[:100]!r} is not allowed for the key"
        return None

    def allows(self, name: str, collection: str = AGENTS) -> bool:
        """Whether a resource of an allow-listed kind (``agents``) may be used."""
        if collection != AGENTS or not self.agents:
            return True
        return name in self.agents

    def allowed_ids(self, organization_id: str, collection: str = AGENTS) -> frozenset[str] | None:
        """The ids of the organisation's allowed resources of this kind; ``None`` when all are allowed."""
        if collection != AGENTS or not self.agents:
            return None
        prefix = f"organizations/{organization_id}/{collection}/"
        return frozenset(n.removeprefix(prefix) for n in self.agents if n.startswith(prefix))

    def to_claim(self) -> dict[str, list[str]]:
        """The compact ``vocelio_restrictions`` claim (expiry travels in ``exp``); empty lists left out."""
        claim: dict[str, list[str]] = {}
        for member, attribute in _CLAIM_MEMBERS.items():
            values = getattr(self, attribute)
            if values:
                claim[member] = list(values)
        return claim

    @classmethod
    def from_claim(cls, value: Any, *, expires_at: float | None = None) -> KeyRestrictions:
        """The restrictions a ``vocelio_restrictions`` claim carries.

        Raises:
            MalformedRestrictions: not an object of string lists with known members.

        """
        if value is None:
            return cls(expires_at=expires_at)
        if not isinstance(value, Mapping) or not set(value) <= set(_CLAIM_MEMBERS):
            raise MalformedRestrictions("restrictions claim is not an object of known members")
        fields: dict[str, tuple[str, ...]] = {}
        for member, attribute in _CLAIM_MEMBERS.items():
            values = value.get(member, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise MalformedRestrictions(f"restrictions claim member {member} is not a list of strings")
            fields[attribute] = tuple(values)
        return cls(**fields, expires_at=expires_at)

    @classmethod
    def of(
        cls,
        *,
        ip_ranges: Iterable[str] = (),
        origins: Iterable[str] = (),
        agents: Iterable[str] = (),
        expires_at: float | None = None,
    ) -> KeyRestrictions:
        """Restrictions from any iterables (a proto's repeated fields)."""
        return cls(tuple(ip_ranges), tuple(origins), tuple(agents), expires_at)


NO_RESTRICTIONS = KeyRestrictions()
