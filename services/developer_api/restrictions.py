"""Where an API key works beyond its scopes: browser origins, client IP ranges, agents.

Restrictions are validated and normalised when a key is written, and checked by
VerifyApiKey on every request that carries a client address or an origin.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Iterable, Mapping

from mesh.errors import InvalidArgument
from mesh.kit.names import ResourceName

MAX_ORIGINS = 20
MAX_IP_RANGES = 50
MAX_AGENTS = 100
# The agents service's name pattern (vocelio.com/Agent); this service never imports its contract.
_AGENTS = ResourceName.from_pattern("organizations/{organization}/agents/{agent}", "vocelio.com/Agent")


@dataclasses.dataclass(frozen=True, slots=True)
class Restrictions:
    """Where a key works beyond its scopes; every non-empty list must match."""

    allowed_origins: tuple[str, ...] = ()
    allowed_ip_ranges: tuple[str, ...] = ()
    allowed_agents: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, list[str]]:
        """A JSON-ready form."""
        return {
            "allowed_origins": list(self.allowed_origins),
            "allowed_ip_ranges": list(self.allowed_ip_ranges),
            "allowed_agents": list(self.allowed_agents),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[str]]) -> Restrictions:
        """The inverse of :meth:`as_dict`."""
        return cls(
            allowed_origins=tuple(data.get("allowed_origins", ())),
            allowed_ip_ranges=tuple(data.get("allowed_ip_ranges", ())),
            allowed_agents=tuple(data.get("allowed_agents", ())),
        )


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


def validate_restrictions(restrictions: Restrictions, *, publishable: bool, organization_id: str) -> Restrictions:
    """Restrictions, normalised (origins in lower case, networks in canonical CIDR form).

    Args:
        restrictions: as the caller gave them.
        publishable: the key is PUBLISHABLE (origins required).
        organization_id: the key's organisation; allowed agents must be its own.

    Raises:
        InvalidArgument: a malformed entry, too many, an agent of another organisation, or a
            publishable key without origins.

    """
    field = "api_key.restrictions"
    origins: list[str] = []
    for value in restrictions.allowed_origins:
        origin = normalize_origin(value)
        if origin is None:
            raise InvalidArgument(
                f"{value!r} is not an origin", {f"{field}.allowed_origins": "origins like https://app.example.com"}
            )
        origins.append(origin)
    networks: list[str] = []
    for value in restrictions.allowed_ip_ranges:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise InvalidArgument(
                f"{value!r} is not an IP range", {f"{field}.allowed_ip_ranges": "CIDR ranges like 203.0.113.0/24"}
            ) from None
    own = f"organizations/{organization_id}/agents/abc"
    for value in restrictions.allowed_agents:
        try:
            agent_organization = _AGENTS.parse(value).organization
        except InvalidArgument:
            agent_organization = None
        if agent_organization != organization_id:
            raise InvalidArgument(
                f"{value!r} is not an agent of the key's organisation",
                {f"{field}.allowed_agents": f"agents of the key's organisation, like {own}"},
            )
    for name, values, limit in (
        ("allowed_origins", origins, MAX_ORIGINS),
        ("allowed_ip_ranges", networks, MAX_IP_RANGES),
        ("allowed_agents", restrictions.allowed_agents, MAX_AGENTS),
    ):
        if len(set(values)) > limit:
            raise InvalidArgument(f"too many {name}", {f"{field}.{name}": f"at most {limit}"})
    if publishable and not origins:
        raise InvalidArgument(
            "publishable keys need allowed origins", {f"{field}.allowed_origins": "required for publishable keys"}
        )
    return Restrictions(
        allowed_origins=tuple(sorted(set(origins))),
        allowed_ip_ranges=tuple(sorted(set(networks))),
        allowed_agents=tuple(sorted(set(restrictions.allowed_agents))),
    )


def parse_client_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
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
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def restriction_failure(restrictions: Restrictions, *, client_address: str, origin: str) -> str | None:
    """Why a request does not meet a key's restrictions (for the log only), or ``None``.

    IP ranges fail closed: a key limited to ranges refuses a request whose address is
    unknown. Origins are checked when the request has one (browsers always send it;
    servers have none, and a publishable key's scopes are harmless from a server).
    """
    if restrictions.allowed_ip_ranges:
        address = parse_client_address(client_address)
        if address is None:
            return "the key is limited to IP ranges and the client address is unknown"
        networks = (ipaddress.ip_network(r) for r in restrictions.allowed_ip_ranges)
        if not any(address.version == n.version and address in n for n in networks):
            return f"client address {address} is outside the key's IP ranges"
    if restrictions.allowed_origins and origin:
        normalized = normalize_origin(origin)
        if normalized not in restrictions.allowed_origins:
            return f"origin {origin[:100]!r} is not allowed for the key"
    return None
