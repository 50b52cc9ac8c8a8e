"""Liveness, readiness and Prometheus metrics: the only routes that need no API key."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lensflow.cloud.api.deps import State
from lensflow.cloud.api.errors import server_fault
from lensflow.cloud.api.schemas import ErrorBody, Health

router = APIRouter(tags=["health"])

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiMetrics:
    """The API's Prometheus metrics, in a registry of its own (no global state).

    Attributes:
        requests: Requests answered, by method, route template and status.
        seconds: Time to answer, by method and route template.

    """

    def __init__(self) -> None:
        """Create the metrics in a fresh registry."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lensflow_api_requests_total",
            "Requests answered.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.seconds = Histogram(
            "lensflow_api_request_seconds",
            "Time to answer a request.",
            ("method", "route"),
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )


class MetricsMiddleware:
    """Count and time every HTTP request, labelled by its route template (not its path)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        """Wrap ``app``, recording into ``metrics``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; record its status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.seconds.labels(method, route).observe(time.perf_counter() - started)


def _metrics(request: Request) -> ApiMetrics:
    """The app's metrics."""
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


@router.get("/healthz", summary="Liveness")
def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness",
    responses={503: {"model": ErrorBody, "description": "The database cannot be reached."}},
)
def readyz(state: State) -> Health:
    """The database answers a query."""
    try:
        with state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        raise server_fault(
            503, "database_unavailable", "expected the database to answer, got an error", err
        ) from err
    return Health(status="ok", checks={"database": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
def metrics(collected: Annotated[ApiMetrics, Depends(_metrics)]) -> Response:
    """The API's metrics in the Prometheus text format."""
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)


HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")
"""Paths without authentication or rate limit."""
