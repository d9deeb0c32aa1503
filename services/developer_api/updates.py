"""UpdateApiKey: which fields change, checked against the rules of an existing key.

The mask (:class:`mesh.kit.masks.UpdateMask`, driven by the contract's ``field_behavior``)
names the fields to change; without a mask, the fields the request sets are changed (a
PATCH). Tightening is anyone's who may update the key: removing scopes, adding or narrowing
restrictions, bringing the expiry forward. Loosening — adding scopes, removing or widening a
restriction, pushing the expiry back — is only for someone who could create the key as it
would become (:func:`services.developer_api.domain.may_loosen`), and added scopes never
exceed the updater's own permissions.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from mesh.errors import InvalidArgument
from mesh.kit import etags
from mesh.kit.masks import UpdateMask
from services.developer_api import convert, domain
from services.developer_api.models import ApiKeyRow
from services.developer_api.restrictions import validate_restrictions, widened
from vocelio.developer_api.v1 import api_key_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

MASK = UpdateMask.for_message(api_key_pb2.ApiKey)


@dataclasses.dataclass(frozen=True, slots=True)
class Updater:
    """Who asks for the change, as far as the loosening rule cares.

    Attributes:
        held: the updater's own permissions.
        is_api_key: the updater is an API key (keys only ever tighten).

    """

    held: frozenset[str]
    is_api_key: bool


def planned_update(
    row: ApiKeyRow,
    request: pb.UpdateApiKeyRequest,
    now: datetime.datetime,
    grantable: frozenset[str],
    *,
    updater: Updater,
    max_lifetime: datetime.timedelta = domain.MAX_LIFETIME,
) -> dict[str, Any]:
    """The column values that change (empty when nothing does).

    Raises:
        InvalidArgument: the mask names a field that cannot change, or a field breaks a rule.
        PermissionDenied: a loosening change by someone who may not loosen the key, or added
            scopes beyond the updater's own permissions.
        FailedPrecondition: the key is not ACTIVE.
        Aborted: the request's etag is stale.

    """
    paths = MASK.resolve(request.update_mask.paths, request.api_key)
    domain.require_active(convert.state_of(row, now), "updated")
    etags.check_etag(request.api_key.etag, convert.etag(row), what="the API key")
    wanted = MASK.apply(convert.key_to_proto(row, now), request.api_key, paths)
    fields = {path.split(".", 1)[0] for path in paths}
    # Whether the updater could create the key as it would become (with the scopes asked for).
    scopes_after = list(wanted.scopes) if "scopes" in fields else convert.scopes_of(row)
    may_loosen = domain.may_loosen(is_api_key=updater.is_api_key, held=updater.held, scopes=scopes_after)
    changes: dict[str, Any] = {}
    for field in sorted(fields):
        if field == "display_name":
            changes["display_name"] = domain.validate_display_name(wanted.display_name)
        elif field == "scopes":
            scopes = domain.narrowed_scopes(
                convert.scopes_of(row), wanted.scopes, known=grantable, held=updater.held, may_add=may_loosen
            )
            if row.key_type == domain.KeyType.PUBLISHABLE.value:
                unsafe = [s for s in scopes if s not in domain.CLIENT_SAFE_SCOPES]
                if unsafe:
                    raise InvalidArgument(
                        f"publishable keys may not hold {', '.join(unsafe)}",
                        {"api_key.scopes": "only client-safe scopes"},
                    )
            changes["scopes"] = json.dumps(list(scopes))
        elif field == "restrictions":
            restrictions = validate_restrictions(
                convert.restrictions_from_proto(wanted.restrictions),
                publishable=row.key_type == domain.KeyType.PUBLISHABLE.value,
                organization_id=row.organization_id,
            )
            loosened = widened(convert.restrictions_of(row), restrictions)
            if loosened:
                domain.require_authority_to_loosen(may_loosen, f"remove or widen {', '.join(loosened)}")
            changes["restrictions"] = json.dumps(restrictions.as_dict(), sort_keys=True)
        elif field == "expire_time":
            changes["expire_time"] = domain.brought_forward_expiry(
                row.expire_time,
                convert.moment(wanted, "expire_time"),
                now,
                max_lifetime=max_lifetime,
                may_extend=may_loosen,
            )
        elif field == "labels":
            changes["labels"] = domain.validate_labels(dict(wanted.labels))
    return {column: value for column, value in changes.items() if getattr(row, column) != value}
