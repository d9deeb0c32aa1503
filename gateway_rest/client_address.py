"""The client's address as the edge sees it: the socket peer, or what trusted proxies say.

Behind a load balancer every connection comes from the balancer, so its
``X-Forwarded-For`` (or RFC 7239 ``Forwarded: for=``) names the client. Anyone can send
those headers, though, so they count only when the socket peer is a configured trusted
proxy, and then only as far as the chain of trusted proxies goes: the hops are walked from
the right (the nearest first), skipping every hop that is itself a trusted proxy, and the
first one that is not is the client. Anything unparseable on that walk (``unknown``,
obfuscated ``_names``, garbage), or two headers that disagree, falls back to the socket
peer: a wrong guess must never be an address the client picked. Pure functions; nothing
here raises.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from mesh.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Enough for any real chain of proxies; a longer header is not walked further.
MAX_HOPS = 32
_MAX_HEADER = 8192


def client_address(
    peer: str,
    forwarded_for: Iterable[str],
    forwarded: Iterable[str],
    trusted: Sequence[IPNetwork],
) -> str:
    """The client address for a request.

    Args:
        peer: the socket peer's address (``request.client.host``).
        forwarded_for: the ``X-Forwarded-For`` header values, in the order received.
        forwarded: the ``Forwarded`` header values, in the order received.
        trusted: the trusted proxies' networks (``VOCELIO_EDGE_TRUSTED_PROXIES``).

    Returns:
        The client's address in canonical form (IPv4-mapped IPv6 as IPv4), or ``peer``
        as given when the peer is not a trusted proxy or the headers cannot be relied on.

    """
    peer_ip = parse_address(peer)
    if peer_ip is None or not trusted or not _is_trusted(peer_ip, trusted):
        return str(peer_ip) if peer_ip is not None else peer
    xff = _joined(forwarded_for)
    rfc = _joined(forwarded)
    candidates = []
    if xff is not None:
        candidates.append(_walk(_split_forwarded_for(xff), trusted))
    if rfc is not None:
        candidates.append(_walk(_split_forwarded(rfc), trusted))
    if not candidates or any(c is None for c in candidates) or len(set(candidates)) != 1:
        return str(peer_ip)
    return str(candidates[0])


def parse_address(value: str) -> IPAddress | None:
    """An address from a hop: ``1.2.3.4``, ``1.2.3.4:80``, ``2001:db8::1``, ``[2001:db8::1]:443``.

    IPv4-mapped IPv6 addresses become IPv4; a zone (``%eth0``) is dropped. ``None`` for
    anything else (``unknown``, ``_hidden``, host names, empty).
    """
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not _is_port(text[end + 1 :])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and len(text) <= 6


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def _joined(values: Iterable[str]) -> str | None:
    """Several header lines are one comma-separated list (RFC 9110 §5.3); ``None`` when absent."""
    lines = [value for value in values]
    if not lines:
        return None
    return ",".join(lines)


def _walk(hops: list[str] | None, trusted: Sequence[IPNetwork]) -> IPAddress | None:
    """The first hop from the right that is not a trusted proxy; ``None`` if the walk hits garbage."""
    if not hops:
        return None
    last: IPAddress | None = None
    for hop in reversed(hops[-MAX_HOPS:]):
        address = parse_address(hop)
        if address is None:
            return None
        if not _is_trusted(address, trusted):
            return address
        last = address
    # Every hop is a trusted proxy: the farthest one is as close to the client as we can tell.
    return last


def _split_forwarded_for(header: str) -> list[str] | None:
    if len(header) > _MAX_HEADER:
        return None
    return [hop.strip() for hop in header.split(",")]


def _split_forwarded(header: str) -> list[str] | None:
    """The ``for=`` value of each element of an RFC 7239 ``Forwarded`` header.

    An element without ``for=`` or a malformed one makes the whole header unusable.
    """
    if len(header) > _MAX_HEADER:
        return None
    elements = _split_outside_quotes(header, ",")
    if elements is None:
        return None
    hops: list[str] = []
    for element in elements:
        value = None
        pairs = _split_outside_quotes(element, ";")
        if pairs is None:
            return None
        for pair in pairs:
            name, equals, raw = pair.strip().partition("=")
            if not equals:
                if pair.strip():
                    return None
                continue
            if name.strip().lower() == "for":
                if value is not None:
                    return None  # two for= in one element
                value = _unquote(raw.strip())
                if value is None:
                    return None
        if value is None:
            return None
        hops.append(value)
    return hops


def _split_outside_quotes(text: str, separator: str) -> list[str] | None:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted or escaped:
        return None
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str | None:
    if not value.startswith('"'):
        return value if '"' not in value else None
    if len(value) < 2 or not value.endswith('"'):
        return None
    inner, out, escaped = value[1:-1], [], False
    for char in inner:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)
