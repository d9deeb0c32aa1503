"""Building security audit entries: who (actor), from where (request facts), what and how it went."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from mesh.kit.caller import CallerInfo
from mesh.kit.ids import new_id
from mesh.principal import Principal, PrincipalKind
from services.identity.domain import redact_details
from services.identity.models import AuditEvent

SOURCE = "identity"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
DENIED = "DENIED"

_KINDS = {PrincipalKind.USER: "USER", PrincipalKind.API_KEY: "API_KEY", PrincipalKind.SERVICE: "SERVICE"}


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who did an audited thing.

    Attributes:
        principal: ``users/…``, ``organizations/…/api_keys/…``, ``services/…``, or ``""`` when anonymous.
        kind: USER, API_KEY, SERVICE or ANONYMOUS.
        display_name: a human label (e-mail, key name, service name).
        role: the role the principal acted with.
        session: ``sessions/…`` when acting in a session.

    """

    principal: str = ""
    kind: str = "ANONYMOUS"
    display_name: str = ""
    role: str = ""
    session: str = ""


ANONYMOUS = Actor()


def actor_of(principal: Principal | None, display_name: str = "") -> Actor:
    """The actor for an authenticated principal (anonymous for ``None``)."""
    if principal is None:
        return ANONYMOUS
    label = display_name or (principal.subject.split("/", 1)[1] if principal.is_service else "")
    return Actor(principal.subject, _KINDS[principal.kind], label, principal.role, principal.session_id)


def user_actor(user_id: str, email: str, role: str = "", session: str = "") -> Actor:
    """The actor for a user identity has just authenticated itself."""
    return Actor(f"users/{user_id}", "USER", email, role, session)


def event(
    *,
    action: str,
    outcome: str,
    actor: Actor,
    request: CallerInfo,
    now: dt.datetime,
    organization_id: str = "",
    target: str = "",
    details: dict[str, str] | None = None,
    source_service: str = SOURCE,
) -> AuditEvent:
    """A new audit row (``action`` and ``outcome`` are enum value names without their prefix)."""
    return AuditEvent(
        id=new_id("ae"),
        organization_id=organization_id,
        event_time=now,
        actor_principal=actor.principal[:200],
        actor_kind=actor.kind,
        actor_display_name=actor.display_name[:254],
        actor_role=actor.role[:20],
        actor_session=actor.session[:100],
        action=action,
        outcome=outcome,
        target=target[:255],
        client_address=request.client_address[:64],
        user_agent=request.user_agent[:512],
        request_id=request.request_id[:100],
        trace_id=request.trace_id[:32],
        source_service=source_service[:64],
        details=json.dumps(redact_details(details or {}), sort_keys=True),
    )
