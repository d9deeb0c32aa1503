"""Who still uses an agent: the check ``DeleteAgent`` makes before it deletes.

Campaigns (``campaigns/…``) and phone numbers (``phone_numbers/…``) refer to agents by
name; deleting an agent they use must fail with FAILED_PRECONDITION. Those answers live
in the campaigns and phone_numbers services, so the check is a port with one adapter
per situation:

- :class:`NoReferringServices` — this release: neither service is implemented (every
  method of theirs answers UNIMPLEMENTED), so no campaign or phone number can refer to
  an agent yet, and the truthful answer is "nobody". It calls nothing and pretends
  nothing.
- When campaigns and phone_numbers land, an adapter that asks them through
  ``context.clients`` (e.g. ``ListCampaigns`` and ``ListPhoneNumbers`` filtered on the
  agent) replaces it in ``service.register``; the servicer does not change.
"""

from __future__ import annotations

from typing import Protocol


class AgentUsage(Protocol):
    """Finds the resources that still use an agent."""

    async def users_of(self, agent_name: str) -> list[str]:
        """Resource names (``campaigns/…``, ``phone_numbers/…``) that use ``agent_name``."""
        ...


class NoReferringServices:
    """Nothing can refer to an agent yet: the services that would are not implemented."""

    async def users_of(self, agent_name: str) -> list[str]:
        """No users: see the module documentation."""
        return []
