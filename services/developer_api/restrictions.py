"""Where an API key works beyond its scopes: browser origins, client IP ranges, agents.

Restrictions are validated and normalised when a key is written, and checked by
VerifyApiKey on every request that carries a client address or an origin.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping

from mesh.errors import InvalidArgument
from mesh.kit.names import ResourceName
from mesh.restrictions import KeyRestrictions, normalize_origin, parse_client_address

__all__ = [
    "Restrictions",
    "as_key_restrictions",
    "normalize_origin",
    "parse_client_address",
    "restriction_failure",
    "validate_restrictions",
]

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


def restriction_failure(restrictions: Restrictions, *, client_address: str, origin: str) -> str | None:
    """Why a request does not meet a key's restrictions (for the log only), or ``None``.

    The rule is :meth:`mesh.restrictions.KeyRestrictions.failure`, the one every
    authenticator applies to the principal on each call.
    """
    return as_key_restrictions(restrictions).failure(client_address, origin)


def as_key_restrictions(restrictions: Restrictions, expires_at: float | None = None) -> KeyRestrictions:
    """The restrictions as the principal carries them."""
    return KeyRestrictions.of(
        ip_ranges=restrictions.allowed_ip_ranges,
        origins=restrictions.allowed_origins,
        agents=restrictions.allowed_agents,
        expires_at=expires_at,
    )


def widened(old: Restrictions, new: Restrictions) -> list[str]:
    """The restriction lists a change removes or widens (``allowed_ip_ranges`` …), for the loosening rule.

    A list widens when it was non-empty and becomes empty (anything goes), or gains an entry
    the old list did not cover (for IP ranges: a network that is no subnet of an old one).
    """
    changed = []
    for name in ("allowed_origins", "allowed_agents"):
        before, after = set(getattr(old, name)), set(getattr(new, name))
        if before and (not after or after - before):
            changed.append(name)
    if old.allowed_ip_ranges:
        before_networks = [ipaddress.ip_network(r, strict=False) for r in old.allowed_ip_ranges]
        after_networks = [ipaddress.ip_network(r, strict=False) for r in new.allowed_ip_ranges]
        if not after_networks or any(
            not any(n.version == o.version and n.subnet_of(o) for o in before_networks)  # type: ignore[arg-type]
            for n in after_networks
        ):
            changed.append("allowed_ip_ranges")
    return changed
