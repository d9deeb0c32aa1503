"""Wires the analytics service into a service host: the projection resource and its projections."""

from __future__ import annotations

import grpc

from mesh.kit.projections import Projections
from runtime.handlers import ServiceContext, answer_unimplemented_rest
from services.analytics.models import ProjectionEventRow, ProjectionStateRow
from services.analytics.projection import EventCountsProjection
from services.analytics.servicer import AnalyticsServicer
from vocelio.analytics.v1 import analytics_service_pb2_grpc


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the analytics servicer (projection methods only) and declare its projections."""
    projections = Projections(
        context.sessions,
        context.event_source,
        context.clock,
        state_row=ProjectionStateRow,
        event_row=ProjectionEventRow,
    )
    projections.add(EventCountsProjection())
    context.projections.append(projections)
    servicer = AnalyticsServicer(context.sessions, projections, context.page_tokens, context.idempotency, context.clock)
    answer_unimplemented_rest(servicer, analytics_service_pb2_grpc.AnalyticsServiceServicer, context.spec)
    analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
