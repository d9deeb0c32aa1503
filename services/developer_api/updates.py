"""UpdateApiKey: which fields change, checked against the rules of an existing key.

The mask (:class:`mesh.kit.masks.UpdateMask`, driven by the contract's ``field_behavior``)
names the fields to change; without a mask, the fields the request sets are changed (a
PATCH). Of the writable fields, scopes may only be removed and the expiry only brought
forward.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from mesh.kit import etags
from mesh.kit.masks import UpdateMask
from services.developer_api import convert, domain
from services.developer_api.models import ApiKeyRow
from services.developer_api.restrictions import validate_restrictions
from vocelio.developer_api.v1 import api_key_pb2
from vocelio.developer_api.v1 import developer_api_service_pb2 as pb

MASK = UpdateMask.for_message(api_key_pb2.ApiKey)


def planned_update(
    row: ApiKeyRow, request: pb.UpdateApiKeyRequest, now: datetime.datetime, grantable: frozenset[str]
) -> dict[str, Any]:
    """The column values that change (empty when nothing does).

    Raises:
        InvalidArgument: the mask names a field that cannot change, or a field breaks a rule
            (adding scopes, pushing the expiry back …).
        FailedPrecondition: the key is not ACTIVE.
        Aborted: the request's etag is stale.

    """
    paths = MASK.resolve(request.update_mask.paths, request.api_key)
    domain.require_active(convert.state_of(row, now), "updated")
    etags.check_etag(request.api_key.etag, convert.etag(row), what="the API key")
    wanted = MASK.apply(convert.key_to_proto(row, now), request.api_key, paths)
    changes: dict[str, Any] = {}
    for field in sorted({path.split(".", 1)[0] for path in paths}):
        if field == "display_name":
            changes["display_name"] = domain.validate_display_name(wanted.display_name)
        elif field == "scopes":
            scopes = domain.narrowed_scopes(convert.scopes_of(row), wanted.scopes, known=grantable)
            changes["scopes"] = json.dumps(list(scopes))
        elif field == "restrictions":
            restrictions = validate_restrictions(
                convert.restrictions_from_proto(wanted.restrictions),
                publishable=row.key_type == domain.KeyType.PUBLISHABLE.value,
                organization_id=row.organization_id,
            )
            changes["restrictions"] = json.dumps(restrictions.as_dict(), sort_keys=True)
        elif field == "expire_time":
            changes["expire_time"] = domain.brought_forward_expiry(
                row.expire_time, convert.moment(wanted, "expire_time"), now
            )
        elif field == "labels":
            changes["labels"] = domain.validate_labels(dict(wanted.labels))
    return {column: value for column, value in changes.items() if getattr(row, column) != value}
