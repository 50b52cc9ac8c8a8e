"""Image search: crops similar to a stored crop or to an uploaded image.

Answers ``503 search_unavailable`` when the cloud config has no ``search:`` section; the
desktop app shows that as "search not available" rather than an error.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError, server_fault
from lensflow.cloud.api.queries import item_loads
from lensflow.cloud.api.routes.results import CropIdPath, to_item
from lensflow.cloud.api.schemas import ErrorBody, Name, ResultItem, Text, UtcTime
from lensflow.cloud.ingest_checks import UnsupportedImageError, check_image_type
from lensflow.cloud.search.errors import SearchError, SearchInputError
from lensflow.cloud.search.index.base import SearchFilter
from lensflow.cloud.search.service import Neighbour, SearchService, SearchUnavailableError
from lensflow.cloud.storage.models import Crop
from lensflow.shared.errors import ImageError
from lensflow.shared.images import SNIFF_BYTES

router = APIRouter(prefix="/v1/search", tags=["search"])

MAX_K = 100
"""Most neighbours one query may ask for."""


class SimilarItem(ResultItem):
    """A similar crop: the result list item plus its similarity to the query."""

    similarity: float = Field(description="Cosine similarity to the query, -1..1 (1: same).")


class SimilarPage(BaseModel):
    """The most similar crops, best first."""

    model_config = ConfigDict(extra="forbid")

    items: list[SimilarItem]
    k: int = Field(description="How many were asked for.")
    node: str = Field(description="The pipeline node whose embeddings are compared.")


def _error(description: str) -> dict[str, Any]:
    """An error response of these routes, with the API's error body."""
    return {"model": ErrorBody, "description": description}


def use_search(app: FastAPI, service: SearchService | None) -> None:
    """Serve searches with ``service`` instead of the configured one; None turns search off.

    Call it before the app starts: its lifespan starts and stops the service's index sync.
    """
    app.state.search = service


def _service(request: Request) -> SearchService:
    service: SearchService | None = getattr(request.app.state, "search", None)
    if service is None:
        raise ApiError(
            503,
            "search_unavailable",
            "image search is not configured: add a `search:` section to the cloud config",
        )
    return service


def _filters(
    camera: str | None, class_name: str | None, since: object, until: object
) -> SearchFilter:
    try:
        return SearchFilter.of(
            cameras=camera,
            classes=class_name,
            since=since,  # type: ignore[arg-type]
            until=until,  # type: ignore[arg-type]
        )
    except SearchInputError as err:
        raise ApiError(400, "invalid_range", str(err)) from err


def _page(session: Session, found: list[Neighbour], *, k: int, node: str) -> SimilarPage:
    """The neighbours as result items, in similarity order (crops deleted since: left out)."""
    pks = [n.crop_pk for n in found]
    query = select(Crop).where(Crop.id.in_(pks)).options(*item_loads())
    crops = {crop.id: crop for crop in session.scalars(query)}
    items = [
        SimilarItem(**to_item(crops[n.crop_pk]).model_dump(), similarity=n.score)
        for n in found
        if n.crop_pk in crops
    ]
    return SimilarPage(items=items, k=k, node=node)


@router.get(
    "/similar/{crop_id}",
    summary="Crops similar to a stored crop",
    responses={
        404: _error("No such crop."),
        409: _error("The crop has no embedding from the search node (`not_embedded`)."),
        503: _error("Search is not configured, or its index or database failed."),
    },
)
def similar_to_crop(
    crop_id: CropIdPath,
    request: Request,
    _caller: Viewer,
    session: DbSession,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many.")] = 10,
    camera: Annotated[Name | None, Query(description="Only this camera.")] = None,
    class_name: Annotated[Text | None, Query(description="Only this edge class.")] = None,
    captured_from: Annotated[UtcTime | None, Query(description="Inclusive, ISO.")] = None,
    captured_to: Annotated[UtcTime | None, Query(description="Exclusive, ISO.")] = None,
) -> SimilarPage:
    """The ``k`` stored crops whose embeddings are closest to this crop's (itself left out)."""
    service = _service(request)
    filters = _filters(camera, class_name, captured_from, captured_to)
    crop_pk = session.scalar(select(Crop.id).where(Crop.crop_id == crop_id))
    if crop_pk is None:
        raise ApiError(404, "unknown_crop", f"expected a stored crop {crop_id!r}, got none")
    try:
        found = service.similar_to_crop(crop_pk, k=k, filters=filters)
    except SearchUnavailableError as err:
        raise ApiError(409, "not_embedded", f"crop {crop_id!r}: {err}") from err
    except SearchError as err:
        raise server_fault(503, "search_failed", "image search failed", err) from err
    return _page(session, found, k=k, node=service.config.node)


@router.post(
    "/image",
    summary="Crops similar to an uploaded image",
    responses={
        400: _error(
            "The image declares more than `search.max_image_pixels` in its header (refused "
            "before decoding) or does not decode (`undecodable_image`); an invalid range; or "
            "both `Authorization` and `X-API-Key` sent (`ambiguous_credentials`)."
        ),
        415: _error("The file is not a JPEG, PNG or WebP image, judged by its content."),
        422: _error("Parameters not as the schema says, or an empty `file` (`empty_upload`)."),
        503: _error("Search is not configured, its embedding node cannot load, or it failed."),
    },
)
def similar_to_image(
    request: Request,
    _caller: Viewer,
    session: DbSession,
    file: Annotated[UploadFile, File(description="A JPEG, PNG or WebP image.")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many.")] = 10,
    camera: Annotated[Name | None, Query(description="Only this camera.")] = None,
    class_name: Annotated[Text | None, Query(description="Only this edge class.")] = None,
    captured_from: Annotated[UtcTime | None, Query(description="Inclusive, ISO.")] = None,
    captured_to: Annotated[UtcTime | None, Query(description="Exclusive, ISO.")] = None,
) -> SimilarPage:
    """The ``k`` stored crops whose embeddings are closest to the uploaded image's."""
    service = _service(request)
    filters = _filters(camera, class_name, captured_from, captured_to)
    data = file.file.read()
    if not data:
        raise ApiError(422, "empty_upload", "expected an image in the `file` field, got 0 bytes")
    try:
        check_image_type(data[:SNIFF_BYTES], declared=file.content_type)
    except UnsupportedImageError as err:
        raise ApiError(415, "unsupported_image", str(err)) from err
    try:
        found = service.similar_to_image(data, k=k, filters=filters)
    except ImageError as err:  # too many pixels in its header (nothing decoded), or undecodable
        raise ApiError(400, "undecodable_image", str(err)) from err
    except SearchUnavailableError as err:
        raise ApiError(503, "search_unavailable", str(err)) from err
    except SearchError as err:
        raise server_fault(503, "search_failed", "image search failed", err) from err
    return _page(session, found, k=k, node=service.config.node)
