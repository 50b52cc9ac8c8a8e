"""Model cards: the name and precision of a model file the API knows by its sha256.

A crop's provenance names its edge model by a hash (``model_sha256``); ``GET
/v1/models/cards?sha256=`` says which model that is, from the model cards in the API's model
cache and the model manifest (:mod:`lensflow.cloud.api.model_cards`). Read-only, any key.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.model_cards import ModelCatalog
from lensflow.cloud.api.schemas import ErrorBody

router = APIRouter(prefix="/models", tags=["models"])
"""Included in the ``/v1`` results router (:mod:`lensflow.cloud.api.routes.results`)."""

_CATALOG_LOCK = threading.Lock()
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]


class ModelCardOut(BaseModel):
    """A model file, as the model cards and the manifest name it."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="The file's sha256 (64 lowercase hex).")
    name: str = Field(description="The model's name.")
    precision: str | None = Field(
        description="Precision of the weights (fp32, int8, uint8...), null when unknown."
    )
    format: str | None = Field(
        description="File format (openvino, onnx) or the manifest's kind, null when unknown."
    )
    source: Literal["card", "manifest"] = Field(
        description="`card`: an exported artifact's model card; `manifest`: the model manifest."
    )


def catalog_of(request: Request) -> ModelCatalog:
    """The app's model catalog, made on first use (it reads files on its first lookup)."""
    with _CATALOG_LOCK:
        catalog: ModelCatalog | None = getattr(request.app.state, "model_cards", None)
        if catalog is None:
            catalog = ModelCatalog.of_this_machine()
            request.app.state.model_cards = catalog
    return catalog


@router.get(
    "/cards",
    summary="The model a file hash names",
    responses={404: {"model": ErrorBody, "description": "No card or manifest entry has it."}},
)
def get_model_card(
    request: Request,
    _caller: Viewer,
    sha256: Annotated[Sha256, Query(description="A model file's sha256 (a crop's model_sha256).")],
) -> ModelCardOut:
    """Name, precision and format of the model file with this sha256 (a crop's edge model)."""
    info = catalog_of(request).lookup(sha256)
    if info is None:
        raise ApiError(
            404,
            "unknown_model",
            f"expected a model card or manifest entry with sha256 {sha256.lower()}, got none",
        )
    return ModelCardOut(
        sha256=info.sha256,
        name=info.name,
        precision=info.precision,
        format=info.format,
        source=info.source,
    )
