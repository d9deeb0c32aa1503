"""UpdateApiKey: which fields change, checked against the rules of an existing key.

The mask names the fields to change (``display_name``, ``scopes``, ``restrictions``,
``expire_time``, ``labels``); without a mask, the fields the request sets are changed
(a PATCH). Scopes may only be removed and the expiry only brought forward.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from mesh.errors import Aborted, InvalidArgument
from services.developer_api import convert, domain
from services.developer_api.models import ApiKeyRow, utc_or_none
from services.developer_api.restrictions import validate_restrictions
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

UPDATABLE = ("display_name", "scopes", "restrictions", "expire_time", "labels")


def update_paths(request: pb.UpdateApiKeyRequest) -> list[str]:
    """The fields to change: the mask's, or the ones the request sets.

    Raises:
        InvalidArgument: the mask names a field that cannot be changed.

    """
    if request.HasField("update_mask") and request.update_mask.paths:
        paths = list(dict.fromkeys(request.update_mask.paths))
        if "*" in paths:
            return list(UPDATABLE)
        wrong = [p for p in paths if p not in UPDATABLE]
        if wrong:
            raise InvalidArgument(
                f"cannot update {', '.join(wrong)}", {"update_mask": f"fields: {', '.join(UPDATABLE)}"}
            )
        return paths
    key = request.api_key
    implied = {
        "display_name": bool(key.display_name),
        "scopes": bool(key.scopes),
        "restrictions": key.HasField("restrictions"),
        "expire_time": key.HasField("expire_time"),
        "labels": bool(key.labels),
    }
    return [field for field in UPDATABLE if implied[field]]


def planned_update(
    row: ApiKeyRow, request: pb.UpdateApiKeyRequest, now: datetime.datetime, grantable: frozenset[str]
) -> dict[str, Any]:
    """The column values that change (empty when nothing does).

    Raises:
        FailedPrecondition: the key is not ACTIVE.
        Aborted: the request's etag is stale.
        InvalidArgument: a field breaks a rule (adding scopes, pushing the expiry back …).

    """
    domain.require_active(convert.state_of(row, now), "updated")
    wanted = request.api_key
    if wanted.etag and wanted.etag != convert.etag(row):
        raise Aborted("the key changed since it was read; read it again and retry")
    changes: dict[str, Any] = {}
    for path in update_paths(request):
        if path == "display_name":
            changes["display_name"] = domain.validate_display_name(wanted.display_name)
        elif path == "scopes":
            scopes = domain.narrowed_scopes(convert.scopes_of(row), wanted.scopes, known=grantable)
            changes["scopes"] = json.dumps(list(scopes))
        elif path == "restrictions":
            restrictions = validate_restrictions(
                convert.restrictions_from_proto(wanted.restrictions),
                publishable=row.key_type == domain.KeyType.PUBLISHABLE.value,
                organization_id=row.organization_id,
            )
            changes["restrictions"] = json.dumps(restrictions.as_dict(), sort_keys=True)
        elif path == "expire_time":
            changes["expire_time"] = domain.brought_forward_expiry(
                utc_or_none(row.expire_time), convert.moment(wanted, "expire_time"), now
            )
        elif path == "labels":
            changes["labels"] = json.dumps(domain.validate_labels(dict(wanted.labels)), sort_keys=True)
    current = {
        "display_name": row.display_name,
        "scopes": row.scopes,
        "restrictions": row.restrictions,
        "expire_time": utc_or_none(row.expire_time),
        "labels": row.labels,
    }
    return {column: value for column, value in changes.items() if current[column] != value}
