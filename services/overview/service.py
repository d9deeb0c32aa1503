"""Wires the overview service into a service host: its servicer and its projection."""

from __future__ import annotations

import grpc

from mesh.kit.projections import Projections
from runtime.handlers import ServiceContext, answer_unimplemented_rest
from services.overview.models import ProjectionEventRow, ProjectionStateRow
from services.overview.projection import OverviewProjection
from services.overview.servicer import OverviewServicer
from vocelio.overview.v1 import overview_service_pb2_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the overview servicer to ``server`` and declare its projection to the host."""
    projections = Projections(
        context.sessions,
        context.event_source,
        context.clock,
        state_row=ProjectionStateRow,
        event_row=ProjectionEventRow,
    )
    projections.add(OverviewProjection())
    context.projections.append(projections)
    servicer = OverviewServicer(context.sessions, projections, context.page_tokens, context.clock)
    answer_unimplemented_rest(servicer, overview_service_pb2_grpc.OverviewServiceServicer, context.spec)
    overview_service_pb2_grpc.add_OverviewServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
