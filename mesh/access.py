"""Roles and their permissions: the one table of who may do what.

Every RPC names the permission it needs in its contract (``(vocelio.api.v1.policy)``).
Roles form a ladder — GUEST < VIEWER < AGENT < MANAGER < ADMIN < SUPER_ADMIN — and each
role holds everything the roles below it hold plus what :data:`ROLE_ADDS` lists for it.
Patterns are globs over ``<resource>.<verb>``. Permissions in :data:`PLATFORM_ONLY` and
the permissions of internal methods are never granted to an organisation role; only
SUPER_ADMIN (and mesh services) hold them. Anything not granted is denied.
"""

from __future__ import annotations

import enum
import fnmatch
import functools
from collections.abc import Iterable

from mesh.registry import Registry, default_registry


class Role(enum.IntEnum):
    """The role ladder; the numbers equal ``vocelio.team_hub.v1.Role``."""

    GUEST = 10
    VIEWER = 20
    AGENT = 30
    MANAGER = 40
    ADMIN = 50
    SUPER_ADMIN = 60

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role with this name (``"ADMIN"`` or ``"ROLE_ADMIN"``).

        Raises:
            ValueError: no such role.

        """
        key = name.upper().removeprefix("ROLE_")
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown role {name!r}") from None


# Readers (VIEWER and up) may get and list almost everything; these stay with ADMIN.
READER_EXCLUDED = (
    "api_keys.*",
    "api_request_logs.*",
    "audit_events.*",
    "signing_keys.*",
    "revoked_tokens.*",
    "invitations.*",
    "billing_accounts.*",
    "invoices.*",
    "ledger_entries.*",
    "usage_records.*",
    "usage_triggers.*",
    "webhook_endpoints.*",
    "webhook_deliveries.*",
    "sub_accounts.*",
    "custom_domains.*",
    "organization_settings.*",
    "settings_overrides.*",
    "settings_changes.*",
    "compliance_policies.*",
    "events.*",
    "event_streams.*",
    "consumer_checkpoints.*",
    "rate_plans.*",
    "organizations.list",
    "analytics_projections.*",
    "notifications.search",
)

ROLE_ADDS: dict[Role, tuple[str, ...]] = {
    Role.GUEST: (
        "users.get",
        "users.update",
        "sessions.list",
        "sessions.delete",
        "organizations.get",
        "roles.list",
        "notifications.get",
        "notifications.list",
        "notifications.update",
        "voices.get",
        "voices.list",
        "voice_providers.list",
        "listings.browse",
        "webhook_event_types.*",
        "integration_providers.list",
        # Accepting an invitation is the invitee's own act, whatever role they hold where they are now.
        "invitations.accept",
    ),
    Role.VIEWER: ("*.get", "*.list", "overview.*", "analytics.query", "calls.get", "compliance_decisions.get"),
    Role.AGENT: (
        "calls.create",
        "calls.cancel",
        "calls.hangup",
        "calls.transfer",
        "calls.update",
        "agents.update",
        "scripts.update",
        "scripts.render",
        "scripts.validate",
        "flows.update",
        "flows.validate",
        "flows.simulate",
        "conversations.simulate",
        "compliance_decisions.check",
        "dnc_entries.create",
        "consent_records.create",
        "voices.preview",
        "voices.rate",
        "speech.synthesize",
        "knowledge_bases.query",
        "listing_reviews.create",
        "incidents.acknowledge",
    ),
    Role.MANAGER: (
        "agents.*",
        "campaigns.*",
        "phone_numbers.*",
        "flows.*",
        "scripts.*",
        "dnc_entries.*",
        "consent_records.*",
        "compliance_decisions.*",
        "voices.*",
        "voice_clone_jobs.*",
        "voice_samples.*",
        "voice_tuning_profiles.*",
        "pronunciation_dictionaries.*",
        "knowledge_bases.*",
        "tools.*",
        "conversations.*",
        "integrations.*",
        "alert_rules.*",
        "incidents.*",
        "notification_channels.*",
        "listings.*",
        "listing_installations.*",
        "teams.*",
        "analytics_reports.*",
        "analytics_export_jobs.*",
        "call_analyses.*",
    ),
    Role.ADMIN: (
        "members.*",
        "invitations.*",
        "organizations.update",
        # an organisation's ADMIN may close it (CloseOrganization's contract); suspending stays platform-only
        "organizations.close",
        "users.*",
        "api_keys.*",
        "api_request_logs.*",
        "audit_events.*",
        "billing_accounts.*",
        "invoices.*",
        "ledger_entries.*",
        "usage_records.*",
        "usage_triggers.*",
        "organization_settings.*",
        "settings_overrides.*",
        "settings_changes.*",
        "brandings.*",
        "custom_domains.*",
        "sub_accounts.*",
        "compliance_policies.*",
        "webhook_endpoints.*",
        "webhook_deliveries.*",
        "events.*",
        "event_streams.get",
        "event_streams.list",
        "event_streams.read",
        "event_streams.subscribe",
        "consumer_checkpoints.*",
        "notifications.*",
        "rate_plans.get",
        "rate_plans.list",
    ),
    Role.SUPER_ADMIN: ("*",),
}

# Platform operations: never part of an organisation role, whatever the patterns say.
PLATFORM_ONLY = (
    "signing_keys.*",
    "rate_plans.create",
    "rate_plans.update",
    "billing_accounts.update_terms",
    "billing_accounts.adjust_balance",
    "listings.approve",
    "listings.reject",
    "organizations.create",
    "organizations.list",
    "organizations.suspend",
    "organizations.reactivate",
    "event_streams.truncate",
    "event_streams.delete",
    "analytics_projections.rebuild",
)


def _matches(permission: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(permission, pattern) for pattern in patterns)


class AccessTable:
    """The permissions of each role, resolved against the permissions the contracts name."""

    def __init__(self, registry: Registry) -> None:
        public_permissions: set[str] = set()
        internal_permissions: set[str] = set()
        for service in registry:
            for method in service.methods:
                if method.policy is None or not method.policy.permission:
                    continue
                target = internal_permissions if method.policy.internal else public_permissions
                target.add(method.policy.permission)
        # A permission some public method uses is an ordinary permission even if an
        # internal method shares it.
        self.internal_only = frozenset(internal_permissions - public_permissions)
        self.all_permissions = frozenset(public_permissions | internal_permissions)
        self._grants: dict[Role, frozenset[str]] = {}
        granted: set[str] = set()
        for role in Role:
            adds = ROLE_ADDS[role]
            for permission in self.all_permissions:
                if not _matches(permission, adds):
                    continue
                if role is Role.VIEWER and adds and _matches(permission, ("*.get", "*.list")):
                    explicitly = permission in adds
                    if _matches(permission, READER_EXCLUDED) and not explicitly:
                        continue
                granted.add(permission)
            if role is Role.SUPER_ADMIN:
                self._grants[role] = frozenset({"*"})
            else:
                self._grants[role] = frozenset(
                    p for p in granted if p not in self.internal_only and not _matches(p, PLATFORM_ONLY)
                )

    def permissions(self, role: Role) -> frozenset[str]:
        """What a role may do (``{"*"}`` for SUPER_ADMIN)."""
        return self._grants[role]

    def allows(self, role: Role, permission: str) -> bool:
        """Whether a role holds a permission."""
        grants = self._grants[role]
        return "*" in grants or permission in grants

    def unused_patterns(self) -> list[str]:
        """Patterns in the table that match no permission of any contract (typos)."""
        patterns = [p for adds in ROLE_ADDS.values() for p in adds if p != "*"]
        patterns += list(PLATFORM_ONLY) + list(READER_EXCLUDED)
        return [p for p in patterns if not any(fnmatch.fnmatchcase(x, p) for x in self.all_permissions)]


def can_grant(granter: Role, role: Role) -> bool:
    """Whether someone with ``granter`` may give ``role`` to another: never above their own."""
    return role <= granter


@functools.cache
def default_access_table() -> AccessTable:
    """The table for the generated contracts (cached per process)."""
    return AccessTable(default_registry())
