"""Dependencies shared by the routes: the app's state and database sessions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.keys import KeyStore
from lensflow.cloud.api.model_index import ModelIndex
from lensflow.cloud.storage.bundles import BundleStorage
from lensflow.cloud.storage.crops import CropStore
from lensflow.shared.classifiers.registry import PluginRegistry
from lensflow.shared.config.cloud import CloudConfig


@dataclass(frozen=True)
class ApiState:
    """What the routes need, built once by ``create_app`` and kept on ``app.state.api``."""

    config: CloudConfig
    engine: Engine
    sessions: sessionmaker[Session]
    crops: CropStore
    bundles: BundleStorage
    keys: KeyStore
    registry: PluginRegistry
    """Plugins, and the model store their model names resolve through (search, ingest)."""
    models: ModelIndex = field(default_factory=ModelIndex)
    """Which model a hash names (model cards, the manifest, registry bundles), with classes."""


def get_state(request: Request) -> ApiState:
    """The app's :class:`ApiState`."""
    state: ApiState = request.app.state.api
    return state


def get_session(state: Annotated[ApiState, Depends(get_state)]) -> Iterator[Session]:
    """A database session for one request, closed after it."""
    with state.sessions() as session:
        yield session


State = Annotated[ApiState, Depends(get_state)]
DbSession = Annotated[Session, Depends(get_session)]


def single_valued_query(request: Request) -> None:
    """Refuse a query parameter given more than once: every parameter of the API is scalar.

    Without this, ``?camera=a&camera=b`` would silently mean ``camera=b``.

    Raises:
        ApiError: 400 ``repeated_parameter`` naming the parameter.

    """
    seen: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in seen:
            raise ApiError(
                400, "repeated_parameter", f"expected query parameter {key!r} once, got it repeated"
            )
        seen.add(key)
