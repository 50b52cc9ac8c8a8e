"""The FastAPI application of the cloud tier: :func:`create_app`.

Everything lives under ``/v1`` except ``/healthz``, ``/readyz`` and ``/metrics``; the OpenAPI
document is at ``/openapi.json`` and its interactive docs at ``/docs``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import Engine

from lensflow.cloud.api.deps import ApiState, single_valued_query
from lensflow.cloud.api.errors import install_error_handlers
from lensflow.cloud.api.keys import KeyStore
from lensflow.cloud.api.limits import BodySizeLimitMiddleware, RateLimitMiddleware, make_limiter
from lensflow.cloud.api.routes import (
    control,
    facets,
    heads,
    health,
    ingest,
    label_schemas,
    labels,
    model_bundles,
    pipelines,
    replays,
    results,
    reviews,
    rollouts,
    search,
    similar,
    workers,
)
from lensflow.cloud.api.routing import LiteralPathMethods, literal_paths
from lensflow.cloud.api.schemas import ErrorBody
from lensflow.cloud.control import ConfigService, Reconciler, RolloutService
from lensflow.cloud.replay.runner import ReplayRunner
from lensflow.cloud.search.embedder import NodeEmbedder
from lensflow.cloud.search.service import SearchService
from lensflow.cloud.storage import (
    ResultStore,
    create_engine_for,
    migrate,
    open_crop_store,
    session_factory,
)
from lensflow.cloud.storage.bundles import open_bundle_store
from lensflow.shared.classifiers.registry import PluginRegistry, default_registry
from lensflow.shared.config.cloud import CloudConfig

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"
_ERROR: dict[str, Any] = {"model": ErrorBody}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _ERROR
    | {
        "description": "Well-formed but unusable: an invalid cursor or range...; or both "
        "`Authorization` and `X-API-Key` sent (`ambiguous_credentials`)."
    },
    401: _ERROR
    | {
        "description": "No API key; a malformed one (an `Authorization` that is not "
        "`Bearer <key>`, an empty `X-API-Key`); or an unknown or revoked one.",
        "headers": {
            "WWW-Authenticate": {
                "description": 'The challenge: `Bearer realm="lensflow"`.',
                "schema": {"type": "string"},
            }
        },
    },
    403: _ERROR | {"description": "The key's role is too low."},
    404: _ERROR | {"description": "No such crop or batch."},
    413: _ERROR | {"description": "Request body over the limit."},
    422: _ERROR | {"description": "Parameters or body not as the schema says."},
    429: _ERROR
    | {
        "description": "Over the key's rate limit, or (without a valid key) the client "
        "address's; see `Retry-After`.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until the budget is renewed.",
                "schema": {"type": "integer"},
            }
        },
    },
    503: _ERROR | {"description": "The results storage is unavailable."},
}
"""Error responses every ``/v1`` route may give, all with the same JSON body."""


def create_app(
    config: CloudConfig, *, engine: Engine | None = None, registry: PluginRegistry | None = None
) -> FastAPI:
    """Build the API application.

    The results database is migrated to the latest schema and the ``api_keys`` table is
    created if missing (both idempotent).

    Args:
        config: The cloud config (database, crop store, ``api`` limits).
        engine: The results database's engine; one is created from ``config.database.url``
            (and disposed of at shutdown) when not given.
        registry: Plugins for the pipeline's nodes (image search, HTTP ingest), with the model
            store their model names resolve through; the discovered default, without a model
            store, when None (``lensflow cloud api`` passes the manifest's store).

    Returns:
        The FastAPI application.

    Raises:
        StorageError: If the database cannot be migrated.
        ApiKeyError: If the ``api_keys`` table cannot be created.

    """
    registry = registry or default_registry()
    owns_engine = engine is None
    if engine is None:
        engine = create_engine_for(config.database.url.get_secret_value())
    migrate(engine)
    keys = KeyStore(engine)
    keys.ensure_table()

    configs = ConfigService(engine)
    rollout_service = RolloutService(
        engine,
        configs=configs,
        heartbeat_history_s=config.control.heartbeat_history_s if config.control else 21600.0,
    )
    reconciler = None
    if config.control is not None:
        reconciler = Reconciler(
            config.control, configs=configs, results=ResultStore(engine), rollouts=rollout_service
        )

    bundles = open_bundle_store(config.crop_store)
    replay_runner = ReplayRunner(
        db_url=config.database.url.get_secret_value(),
        crop_store=config.crop_store,
        registry=registry,
        engine=engine,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        searcher: SearchService | None = app.state.search
        if reconciler is not None:
            reconciler.start()
        if searcher is not None:
            searcher.start()
        replay_runner.recover()
        bundles.sweep()  # uploads killed in an earlier run
        yield
        replay_runner.close()
        if searcher is not None:
            searcher.stop()
        if reconciler is not None:
            reconciler.stop()
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="lensflow cloud API",
        version=API_VERSION,
        summary="Results, crops, aggregates and relabelling of the lensflow cloud tier.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        lifespan=lifespan,
        dependencies=[Depends(single_valued_query)],
    )
    app.state.api = ApiState(
        config=config,
        engine=engine,
        sessions=session_factory(engine),
        crops=open_crop_store(config.crop_store),
        bundles=bundles,
        keys=keys,
        registry=registry,
    )
    app.state.keys = keys
    app.state.control = control.ControlState(
        configs=configs,
        rollouts=rollout_service,
        reconciler=reconciler,
        offline_after_s=config.control.offline_after_s if config.control else 60.0,
    )
    app.state.metrics = health.ApiMetrics()
    app.state.replays = replay_runner
    app.state.search = _search_service(config, engine, registry)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(results.router, responses=ERROR_RESPONSES)
    app.include_router(facets.router, responses=ERROR_RESPONSES)
    app.include_router(labels.router, responses=ERROR_RESPONSES)
    app.include_router(similar.router, responses=ERROR_RESPONSES)
    app.include_router(reviews.router, responses=ERROR_RESPONSES)
    app.include_router(label_schemas.router, responses=ERROR_RESPONSES)
    app.include_router(ingest.router, responses=ERROR_RESPONSES)
    app.include_router(control.configs_router, responses=ERROR_RESPONSES)
    app.include_router(control.edges_router, responses=ERROR_RESPONSES)
    app.include_router(rollouts.router, responses=ERROR_RESPONSES)
    app.include_router(search.router, responses=ERROR_RESPONSES)
    app.include_router(pipelines.router, responses=ERROR_RESPONSES)
    app.include_router(replays.router, responses=ERROR_RESPONSES)
    app.include_router(heads.router, responses=ERROR_RESPONSES)
    app.include_router(workers.router, responses=ERROR_RESPONSES)
    app.include_router(model_bundles.router, responses=ERROR_RESPONSES)
    # the last added is the outermost: metrics see every answer, 413 before the rate limit,
    # the rate limit before a wrong method's 405
    app.add_middleware(LiteralPathMethods, allowed=literal_paths(app.openapi()["paths"]))
    app.add_middleware(
        RateLimitMiddleware,
        keyed=make_limiter(config.api.rate_limit, per="key"),
        anonymous=make_limiter(config.api.unauthenticated_rate_limit, per="address"),
        exempt=health.HEALTH_PATHS,
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=config.api.max_request_bytes,
        per_path={model_bundles.PATH: (config.api.max_model_bytes, "api.max_model_bytes")},
    )
    app.add_middleware(health.MetricsMiddleware, metrics=app.state.metrics)
    return app


def _search_service(
    config: CloudConfig, engine: Engine, registry: PluginRegistry
) -> SearchService | None:
    """The configured image search (its index opened, its embedder loaded on first use)."""
    if config.search is None:
        return None
    embedder = NodeEmbedder(
        config.pipeline,
        config.search.node,
        registry=registry,
        max_pixels=config.search.max_image_pixels,
    )
    return SearchService(config.search, engine=engine, embedder=embedder)
