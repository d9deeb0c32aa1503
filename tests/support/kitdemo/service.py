"""``kitdemo.v1.WidgetsService``: Create, Get, List, Update, Delete — every generic step from the kit."""

from __future__ import annotations

from typing import Any

import grpc
from kitdemo.v1 import widgets_pb2, widgets_pb2_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mesh.kit import etags, ids, paging, tenancy
from mesh.kit.filtering import FilterField, FilterSchema, Kind, compile_filter
from mesh.kit.idempotency import request_id_problem
from mesh.kit.masks import UpdateMask
from mesh.kit.names import ResourceName
from mesh.kit.sql import flush
from mesh.kit.validation import Violations, map_key_path
from mesh.principal import Principal, current
from runtime.handlers import ServiceContext
from tests.support.kitdemo.models import WidgetRow

WIDGETS = ResourceName.for_message(widgets_pb2.Widget)
MASK = UpdateMask.for_message(widgets_pb2.Widget)
FILTERS: FilterSchema = {
    "display_name": FilterField(Kind.STRING, WidgetRow.display_name),
    "colour": FilterField(Kind.STRING, WidgetRow.colour),
    "create_time": FilterField(Kind.TIMESTAMP, WidgetRow.create_time),
    "labels": FilterField(Kind.LABELS, WidgetRow.labels),
}
_CONCURRENT = "the widget was changed concurrently; read it again and retry"


def to_proto(row: WidgetRow) -> widgets_pb2.Widget:
    """The resource of a row."""
    name = WIDGETS.format(organization=row.organization_id, widget=row.id)
    return widgets_pb2.Widget(
        name=name,
        display_name=row.display_name,
        description=row.description,
        labels=row.labels,
        colour=row.colour,
        audit=row.audit_info(),
        etag=row.etag_for(name),
    )


def _widget_problems(widget: widgets_pb2.Widget, violations: Violations) -> None:
    """The widget's own rules: a display name, short free text, at most 10 labels."""
    violations.text("display_name", widget.display_name, limit=100, required=True)
    violations.text("description", widget.description, limit=1000, multiline=True)
    violations.check(len(widget.labels) <= 10, "labels", "must have at most 10 entries")
    for key in widget.labels:
        violations.check(len(key) <= 63, map_key_path("labels", key), "key must be at most 63 characters")


class WidgetsServicer(widgets_pb2_grpc.WidgetsServiceServicer):
    """Widgets, on the kit."""

    def __init__(self, context: ServiceContext) -> None:
        self._context = context

    async def GetWidget(self, request: widgets_pb2.GetWidgetRequest, context: Any) -> widgets_pb2.GetWidgetResponse:
        """Gets one widget."""
        principal = current()
        parsed = WIDGETS.parse(request.name)
        async with self._context.sessions.begin() as session:
            row = await self._readable(session, principal, parsed.organization, parsed["widget"])
            return widgets_pb2.GetWidgetResponse(widget=to_proto(row))

    async def ListWidgets(
        self, request: widgets_pb2.ListWidgetsRequest, context: Any
    ) -> widgets_pb2.ListWidgetsResponse:
        """Lists widgets, newest first."""
        principal = current()
        scope = tenancy.list_scope(principal, WIDGETS.parse_parent(request.parent).organization)
        limit = paging.page_size(request.page_size)
        binding = paging.query_binding(request, scope.binding())
        after = self._context.page_tokens.decode_optional(request.page_token, binding)
        query = select(WidgetRow)
        if not scope.everywhere:
            query = query.where(WidgetRow.organization_id == scope.organization_id)
        if (clause := compile_filter(request.filter, FILTERS)) is not None:
            query = query.where(clause)
        keys = None
        if after is not None:
            micros, organization, widget_id = paging.position_shape(after, int, str, str)
            keys = (paging.from_time_key(micros), organization, widget_id)
        async with self._context.sessions.begin() as session:
            page: paging.Page[WidgetRow] = await paging.keyset_page(
                session,
                query,
                keys=[WidgetRow.create_time, WidgetRow.organization_id, WidgetRow.id],
                after=keys,
                limit=limit,
                position_of=lambda row: (paging.time_key(row.create_time), row.organization_id, row.id),
            )
            widgets = [to_proto(row) for row in page.items]
        token = self._context.page_tokens.encode(page.next_after, binding) if page.next_after else ""
        return widgets_pb2.ListWidgetsResponse(widgets=widgets, next_page_token=token)

    async def CreateWidget(
        self, request: widgets_pb2.CreateWidgetRequest, context: Any
    ) -> widgets_pb2.CreateWidgetResponse:
        """Creates a widget (once per request_id)."""
        principal = current()
        organization_id = tenancy.write_organization(
            principal, WIDGETS.parse_parent(request.parent, allow_wildcard=False).organization
        )
        violations = Violations()
        _widget_problems(request.widget, violations.nested("widget."))
        if request.widget_id and (problem := ids.chosen_id_problem(request.widget_id)):
            violations.add("widget_id", problem)
        if problem := request_id_problem(request.request_id):
            violations.add("request_id", problem)
        violations.raise_if_any()
        widget_id = request.widget_id or ids.new_id("wg")
        name = WIDGETS.format(organization=organization_id, widget=widget_id)
        async with self._context.sessions.begin() as session:
            claim = await self._context.idempotency.claim(
                session,
                method="CreateWidget",
                organization_id=organization_id,
                principal=principal.subject,
                request=request,
                response_type=widgets_pb2.CreateWidgetResponse,
            )
            if claim.replay is not None:
                return claim.replay
            row = WidgetRow(
                organization_id=organization_id,
                id=widget_id,
                display_name=request.widget.display_name,
                description=request.widget.description,
                colour=request.widget.colour,
                labels=dict(request.widget.labels),
            )
            row.stamp_created(principal.subject, self._context.clock.now())
            session.add(row)
            await flush(session, exists=f"{name} already exists")
            response = widgets_pb2.CreateWidgetResponse(widget=to_proto(row))
            await claim.complete(session, response)
        return response

    async def UpdateWidget(
        self, request: widgets_pb2.UpdateWidgetRequest, context: Any
    ) -> widgets_pb2.UpdateWidgetResponse:
        """Changes the masked fields."""
        principal = current()
        parsed = WIDGETS.parse(request.widget.name, field="widget.name")
        paths = MASK.resolve(request.update_mask.paths, request.widget)
        async with self._context.sessions.begin() as session:
            row = await self._changeable(session, principal, parsed.organization, parsed["widget"], request.widget.etag)
            updated = MASK.apply(to_proto(row), request.widget, paths)
            violations = Violations()
            _widget_problems(updated, violations.nested("widget."))
            violations.raise_if_any()
            row.display_name = updated.display_name
            row.description = updated.description
            row.labels = dict(updated.labels)
            row.stamp_changed(principal.subject, self._context.clock.now())
            await flush(session, stale=_CONCURRENT)
            return widgets_pb2.UpdateWidgetResponse(widget=to_proto(row))

    async def DeleteWidget(
        self, request: widgets_pb2.DeleteWidgetRequest, context: Any
    ) -> widgets_pb2.DeleteWidgetResponse:
        """Deletes a widget."""
        principal = current()
        parsed = WIDGETS.parse(request.name)
        async with self._context.sessions.begin() as session:
            row = await self._changeable(session, principal, parsed.organization, parsed["widget"], request.etag)
            await session.delete(row)
            await flush(session, stale=_CONCURRENT)
        return widgets_pb2.DeleteWidgetResponse()

    async def _readable(
        self, session: AsyncSession, principal: Principal, organization_id: str, widget_id: str
    ) -> WidgetRow:
        row = await session.get(WidgetRow, (organization_id, widget_id))
        if row is None or not tenancy.may_read(principal, organization_id):
            raise tenancy.not_found(WIDGETS.format(organization=organization_id, widget=widget_id))
        return row

    async def _changeable(
        self, session: AsyncSession, principal: Principal, organization_id: str, widget_id: str, etag: str
    ) -> WidgetRow:
        row = await self._readable(session, principal, organization_id, widget_id)
        name = WIDGETS.format(organization=organization_id, widget=widget_id)
        tenancy.require_writable(principal, organization_id, name)
        etags.check_etag(etag, row.etag_for(name), what="the widget")
        return row


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the widgets servicer to ``server``."""
    widgets_pb2_grpc.add_WidgetsServiceServicer_to_server(WidgetsServicer(context), server)
