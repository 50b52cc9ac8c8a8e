"""Model cards: the name and precision of a model file the API knows by its sha256.

A crop's provenance names its edge model by a hash (``model_sha256``); ``GET
/v1/models/cards?sha256=`` says which model that is, from the model cards in the API's model
cache, the model manifest and the registry's bundles — a bundle's sha256 (what an edge that
downloaded it reports) or a file's inside one (:mod:`lensflow.cloud.api.model_index`).
Read-only, any key.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.schemas import ErrorBody

router = APIRouter(prefix="/models", tags=["models"])
"""Included in the ``/v1`` results router (:mod:`lensflow.cloud.api.routes.results`)."""

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
    source: Literal["card", "manifest", "bundle"] = Field(
        description="`card`: an exported artifact's model card; `manifest`: the model "
        "manifest; `bundle`: a model registry bundle (the bundle itself or a file in it)."
    )


@router.get(
    "/cards",
    summary="The model a file hash names",
    responses={
        404: {"model": ErrorBody, "description": "No card, manifest entry or bundle has it."}
    },
)
def get_model_card(
    state: State,
    session: DbSession,
    _caller: Viewer,
    sha256: Annotated[
        Sha256,
        Query(description="A model file's or registry bundle's sha256 (a crop's model_sha256)."),
    ],
) -> ModelCardOut:
    """Name, precision and format of the model with this sha256 (a crop's edge model)."""
    info = state.models.lookup(session, sha256)
    if info is None:
        raise ApiError(
            404,
            "unknown_model",
            f"expected a model card, manifest entry or registry bundle with sha256 "
            f"{sha256.lower()}, got none",
        )
    return ModelCardOut(
        sha256=info.sha256,
        name=info.name,
        precision=info.precision,
        format=info.format,
        source=info.source,
    )
