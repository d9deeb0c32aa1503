"""Metadata names of the client address the REST edge forwards, and who may set them.

The edge puts the client's address in ``x-forwarded-for`` and vouches for it with its own
service token in ``x-vocelio-proxy-authorization`` (next to the caller's own
``authorization``). A service believes ``x-forwarded-for`` only when that token verifies
as the edge's (``services/edge``); from anyone else the transport peer is the client.
"""

from __future__ import annotations

FORWARDED_FOR = "x-forwarded-for"
PROXY_AUTHORIZATION = "x-vocelio-proxy-authorization"
EDGE_SUBJECT = "services/edge"
