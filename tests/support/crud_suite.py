"""One suite of standard-resource behaviour, run against every kit-built service.

Each :class:`CrudTarget` adapts one service's Create/Get/List/Update/Delete to the same
calls; the ``check_*`` coroutines are the tests (``tests/mesh/kit/test_crud_suite.py`` runs
them against agents and the kit demo): keyset paging with tokens bound to the query,
update masks from field_behavior, etags, tenancy (same ids in two organisations, "not
yours" = "not there") and request_id idempotency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kitdemo.v1 import widgets_pb2, widgets_pb2_grpc

from mesh.config import Settings
from tests.support.kit import KitService, kit_service
from tests.support.kitdemo.harness import running_kitdemo
from vocelio.agents.v1 import agent_pb2, agents_service_pb2, agents_service_pb2_grpc

Metadata = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class CrudTarget:
    """One service's standard methods behind one shape of call.

    Attributes:
        label: the target's name in test ids.
        collection: the collection id (``agents``).
        start: runs the service (an async context manager of :class:`KitService`).
        stub_class: the generated stub.
        resource_class: the resource message (``Agent``).
        singular: the request/response field holding one resource (``agent``); the list
            field is ``collection``, the chosen-id field ``<singular>_id``.
        requests: the request class of each of create, get, list, update, delete.
        method_names: the RPC name of each of them.

    """

    label: str
    collection: str
    start: Callable[[Settings], contextlib.AbstractAsyncContextManager[KitService]]
    stub_class: type
    resource_class: type
    singular: str
    requests: dict[str, type]
    method_names: dict[str, str]

    def resource(self, display_name: str, labels: dict[str, str] | None = None) -> Any:
        """A resource message to create."""
        return self.resource_class(display_name=display_name, labels=labels or {})

    async def create(
        self, service: KitService, metadata: Metadata, org: str, *, resource_id: str = "", request_id: str = "",
        display_name: str = "Thing", labels: dict[str, str] | None = None,
    ) -> Any:  # fmt: skip
        """Create a resource in ``org``."""
        request = self.requests["create"](parent=f"organizations/{org}", request_id=request_id)
        getattr(request, self.singular).CopyFrom(self.resource(display_name, labels))
        setattr(request, f"{self.singular}_id", resource_id)
        reply = await self._call(service, "create", request, metadata)
        return getattr(reply, self.singular)

    async def get(self, service: KitService, metadata: Metadata, name: str) -> Any:
        """Get a resource by name."""
        reply = await self._call(service, "get", self.requests["get"](name=name), metadata)
        return getattr(reply, self.singular)

    async def list(
        self, service: KitService, metadata: Metadata, parent: str, *, page_size: int = 0, page_token: str = "",
        filter_text: str = "",
    ) -> tuple[list[Any], str]:  # fmt: skip
        """One page of a listing."""
        request = self.requests["list"](parent=parent, page_size=page_size, page_token=page_token, filter=filter_text)
        reply = await self._call(service, "list", request, metadata)
        return list(getattr(reply, self.collection)), reply.next_page_token

    async def update(self, service: KitService, metadata: Metadata, patch: Any, paths: Sequence[str]) -> Any:
        """Update the masked fields."""
        request = self.requests["update"](update_mask=field_mask_pb2.FieldMask(paths=list(paths)))
        getattr(request, self.singular).CopyFrom(patch)
        reply = await self._call(service, "update", request, metadata)
        return getattr(reply, self.singular)

    async def delete(self, service: KitService, metadata: Metadata, name: str, etag: str = "") -> None:
        """Delete a resource."""
        await self._call(service, "delete", self.requests["delete"](name=name, etag=etag), metadata)

    async def _call(self, service: KitService, method: str, request: Any, metadata: Metadata) -> Any:
        stub: Any = service.stub(self.stub_class)
        return await getattr(stub, self.method_names[method])(request, metadata=metadata, timeout=10)


def _methods(noun: str) -> dict[str, str]:
    return {
        verb.lower(): f"{verb}{noun}{'s' if verb == 'List' else ''}"
        for verb in ("Create", "Get", "List", "Update", "Delete")
    }


AGENTS = CrudTarget(
    label="agents",
    collection="agents",
    start=lambda settings: kit_service(settings, "agents"),
    stub_class=agents_service_pb2_grpc.AgentsServiceStub,
    resource_class=agent_pb2.Agent,
    singular="agent",
    requests={
        "create": agents_service_pb2.CreateAgentRequest,
        "get": agents_service_pb2.GetAgentRequest,
        "list": agents_service_pb2.ListAgentsRequest,
        "update": agents_service_pb2.UpdateAgentRequest,
        "delete": agents_service_pb2.DeleteAgentRequest,
    },
    method_names=_methods("Agent"),
)
WIDGETS = CrudTarget(
    label="kitdemo",
    collection="widgets",
    start=lambda settings: running_kitdemo(settings),
    stub_class=widgets_pb2_grpc.WidgetsServiceStub,
    resource_class=widgets_pb2.Widget,
    singular="widget",
    requests={
        "create": widgets_pb2.CreateWidgetRequest,
        "get": widgets_pb2.GetWidgetRequest,
        "list": widgets_pb2.ListWidgetsRequest,
        "update": widgets_pb2.UpdateWidgetRequest,
        "delete": widgets_pb2.DeleteWidgetRequest,
    },
    method_names=_methods("Widget"),
)
TARGETS = (AGENTS, WIDGETS)


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call ends with (it must fail)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded")


def violations(error: grpc.aio.AioRpcError) -> set[str]:
    """The BadRequest field paths of an error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: set[str] = set()
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found |= {v.field for v in bad_request.field_violations}
    return found


@contextlib.asynccontextmanager
async def running(target: CrudTarget, settings: Settings) -> AsyncIterator[KitService]:
    """The target's service, running."""
    async with target.start(settings) as service:
        yield service


async def check_lists_page_with_tokens_bound_to_the_query(target: CrudTarget, service: KitService) -> None:
    """Keyset pages, newest first, and a token refused with another filter or parent."""
    alice = service.as_user("org_a")
    made = []
    for i in range(5):
        service.tick()
        made.append((await target.create(service, alice, "org_a", display_name=f"T{i}", labels={"batch": "one"})).name)
    await target.create(service, service.as_user("org_b", user="users/bob"), "org_b")
    seen: list[str] = []
    items, token = await target.list(service, alice, "organizations/org_a", page_size=2)
    seen += [item.name for item in items]
    first_token = token
    while token:
        items, token = await target.list(service, alice, "organizations/org_a", page_size=2, page_token=token)
        seen += [item.name for item in items]
    assert seen == made[::-1]
    matching, _ = await target.list(service, alice, "organizations/org_a", filter_text='labels.batch = "one"')
    assert len(matching) == 5
    error = await refused(
        target.list(service, alice, "organizations/org_a", page_size=2, page_token=first_token,
                    filter_text='labels.batch = "two"')
    )  # fmt: skip
    assert (error.code(), violations(error)) == (grpc.StatusCode.INVALID_ARGUMENT, {"page_token"})
    error = await refused(target.list(service, alice, "organizations/org_a", page_size=-1))
    assert violations(error) == {"page_size"}
    error = await refused(target.list(service, alice, "organizations/org_a", filter_text="nope = 1"))
    assert violations(error) == {"filter"}


async def check_update_masks_follow_field_behavior(target: CrudTarget, service: KitService) -> None:
    """Named paths change, output-only and unknown paths are refused by index."""
    alice = service.as_user("org_a")
    made = await target.create(service, alice, "org_a", display_name="Before")
    patch = target.resource_class(name=made.name, display_name="After", description="kept?")
    updated = await target.update(service, alice, patch, ["display_name"])
    assert (updated.display_name, updated.description) == ("After", made.description)
    error = await refused(target.update(service, alice, patch, ["display_name", "audit", "no_such_field"]))
    assert (error.code(), violations(error)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"update_mask.paths[1]", "update_mask.paths[2]"},
    )


async def check_stale_etags_abort(target: CrudTarget, service: KitService) -> None:
    """A change sent with an etag that is no longer current is ABORTED; the current one works."""
    alice = service.as_user("org_a")
    made = await target.create(service, alice, "org_a")
    fresh = await target.update(
        service, alice, target.resource_class(name=made.name, display_name="One", etag=made.etag), ["display_name"]
    )
    assert fresh.etag != made.etag
    stale = target.resource_class(name=made.name, display_name="Two", etag=made.etag)
    assert (await refused(target.update(service, alice, stale, ["display_name"]))).code() == grpc.StatusCode.ABORTED
    assert (await refused(target.delete(service, alice, made.name, made.etag))).code() == grpc.StatusCode.ABORTED
    await target.delete(service, alice, made.name, fresh.etag)
    assert (await refused(target.get(service, alice, made.name))).code() == grpc.StatusCode.NOT_FOUND


async def check_tenancy(target: CrudTarget, service: KitService) -> None:
    """Two organisations use one id; each sees its own; another's resource answers like a missing one."""
    alice, bob = service.as_user("org_a"), service.as_user("org_b", user="users/bob")
    mine = await target.create(service, alice, "org_a", resource_id="shared-id", display_name="A's")
    theirs = await target.create(service, bob, "org_b", resource_id="shared-id", display_name="B's")
    assert mine.name == f"organizations/org_a/{target.collection}/shared-id"
    assert theirs.name == f"organizations/org_b/{target.collection}/shared-id"
    assert [r.display_name for r in (await target.list(service, alice, "organizations/org_a"))[0]] == ["A's"]
    assert [r.display_name for r in (await target.list(service, bob, "organizations/org_b"))[0]] == ["B's"]
    missing = f"organizations/org_b/{target.collection}/never-made"
    foreign = await refused(target.get(service, alice, theirs.name))
    absent = await refused(target.get(service, alice, missing))
    assert foreign.code() == absent.code() == grpc.StatusCode.NOT_FOUND
    assert (foreign.details() or "").replace(theirs.name, missing) == absent.details()
    # No details either way (a BadRequest or ErrorInfo would be a difference too).
    assert rpc_status.from_call(foreign) is None  # type: ignore[arg-type]
    assert rpc_status.from_call(absent) is None  # type: ignore[arg-type]
    for parent in ("organizations/org_b", "organizations/nowhere"):
        error = await refused(target.list(service, alice, parent))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    everywhere, _ = await target.list(service, service.as_platform_admin(), "organizations/-")
    assert {r.name for r in everywhere} == {mine.name, theirs.name}


async def check_request_ids_deduplicate(target: CrudTarget, service: KitService) -> None:
    """Same request_id and request → the first response; another request → INVALID_ARGUMENT."""
    alice = service.as_user("org_a")
    request_id = str(uuid.uuid4())
    first = await target.create(service, alice, "org_a", request_id=request_id, display_name="Once")
    again = await target.create(service, alice, "org_a", request_id=request_id, display_name="Once")
    assert again == first
    assert len((await target.list(service, alice, "organizations/org_a"))[0]) == 1
    error = await refused(target.create(service, alice, "org_a", request_id=request_id, display_name="Other"))
    assert (error.code(), violations(error)) == (grpc.StatusCode.INVALID_ARGUMENT, {"request_id"})
    error = await refused(target.create(service, alice, "org_a", request_id="not-a-uuid"))
    assert violations(error) == {"request_id"}


CHECKS = (
    check_lists_page_with_tokens_bound_to_the_query,
    check_update_masks_follow_field_behavior,
    check_stale_etags_abort,
    check_tenancy,
    check_request_ids_deduplicate,
)
