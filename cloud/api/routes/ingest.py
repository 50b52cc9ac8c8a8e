"""``POST /v1/ingest``: upload a whole image; the server detects, crops, classifies and stores.

The gateway path, for clients without an edge agent. The request is a multipart form:
``file`` (the image), ``site``, ``camera`` and an optional ``captured_at``. The image is
judged by its content, not its name or declared type (JPEG, PNG or WebP, else 415), then by
its size (``ingest.max_image_bytes``, else 413); one whose header declares more than
``ingest.max_image_pixels`` (refused before decoding) or that does not decode is kept as a dead
letter (source ``http``) and refused with 400. Each kept detection becomes a crop processed
as the worker processes edge crops; the answer lists them as ``GET /v1/results`` does (201),
or none (200). Without an ``ingest`` section in the cloud config the route answers 503.

Detection and the DAG run in worker threads, at most ``ingest.workers`` images at a time,
never on the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from sqlalchemy import select

from lensflow.cloud.api.auth import Operator
from lensflow.cloud.api.deps import ApiState, State
from lensflow.cloud.api.errors import ApiError, server_fault
from lensflow.cloud.api.queries import item_loads
from lensflow.cloud.api.routes.results import to_item
from lensflow.cloud.api.schemas import ErrorBody, ProvenanceOut, ResultItem, UtcTime
from lensflow.cloud.ingest import IngestService, Upload
from lensflow.cloud.ingest_checks import (
    ImageTooLargeError,
    IngestError,
    IngestNotConfiguredError,
    IngestUnavailableError,
    UndecodableImageError,
    UnsupportedImageError,
    check_image_size,
    check_image_type,
)
from lensflow.cloud.storage import ResultStore
from lensflow.cloud.storage.models import Crop
from lensflow.shared.errors import ProtocolError
from lensflow.shared.images import SNIFF_BYTES
from lensflow.shared.protocol import SEGMENT_PATTERN, validate_segment

router = APIRouter(prefix="/v1", tags=["ingest"])

_STATUS: dict[type[IngestError], tuple[int, str]] = {
    UnsupportedImageError: (415, "unsupported_media_type"),
    ImageTooLargeError: (413, "image_too_large"),
    UndecodableImageError: (400, "undecodable_image"),
    IngestNotConfiguredError: (503, "ingest_not_configured"),
    IngestUnavailableError: (503, "ingest_unavailable"),
}


def _error(description: str) -> dict[str, Any]:
    """An error response of this route, with the API's error body."""
    return {"model": ErrorBody, "description": description}


def _segment(name: str) -> AfterValidator:
    """A validator applying the protocol's site/camera segment rules to the field ``name``."""

    def check(value: str) -> str:
        try:
            return validate_segment(value, name=name)
        except ProtocolError as err:
            raise ValueError(str(err)) from err

    return AfterValidator(check)


_SEGMENT_SCHEMA = {"pattern": f"^{SEGMENT_PATTERN.pattern}$"}
SiteForm = Annotated[
    str, Form(description="Site id (a topic segment).", json_schema_extra=_SEGMENT_SCHEMA)
]
CameraForm = Annotated[
    str, Form(description="Camera id (a topic segment).", json_schema_extra=_SEGMENT_SCHEMA)
]


class IngestResult(BaseModel):
    """What an uploaded image produced."""

    model_config = ConfigDict(extra="forbid")

    site: str
    camera: str
    captured_at: datetime = Field(description="As given, else when the image arrived (UTC).")
    received_at: datetime
    media_type: str = Field(description="The image's type, judged by its content.")
    frame_width: int
    frame_height: int
    detections: int = Field(description="Objects found, before the class filter and the cap.")
    failed: int = Field(description="Crops the pipeline raised on, kept as dead letters.")
    provenance: ProvenanceOut = Field(description="The server's model, ingest config, version.")
    crops: list[ResultItem] = Field(
        description="The crops stored, best detection first, as `GET /v1/results` lists them."
    )


def use_ingest(app: FastAPI, service: IngestService) -> None:
    """Make ``app`` ingest with ``service`` instead of the one built from its config.

    For a caller that needs a plugin registry or a detector loader of its own (tests, a
    launcher with extra plugins); call it before the first upload.

    Args:
        app: An app from :func:`~lensflow.cloud.api.app.create_app`.
        service: The ingest service to use.

    """
    app.state.ingest = service


async def _service(request: Request) -> IngestService:
    """The app's ingest service, built from its config on first use (on the event loop)."""
    service: IngestService | None = getattr(request.app.state, "ingest", None)
    if service is None:
        state: ApiState = request.app.state.api
        service = IngestService(
            state.config,
            results=ResultStore(state.engine),
            crops=state.crops,
            registry=state.registry,
        )
        use_ingest(request.app, service)
    return service


async def _limiter(
    request: Request, service: Annotated[IngestService, Depends(_service)]
) -> anyio.CapacityLimiter:
    """The app's limit on images processed at once (``ingest.workers``), made on first use."""
    limiter: anyio.CapacityLimiter | None = getattr(request.app.state, "ingest_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(service.workers)
        request.app.state.ingest_limiter = limiter
    return limiter


@router.post(
    "/ingest",
    status_code=201,
    summary="Upload an image: detect, crop, classify and store",
    responses={
        200: {"model": IngestResult, "description": "Nothing kept: no crop was created."},
        201: {"description": "Crops created."},
        400: _error(
            "The image declares more than `ingest.max_image_pixels` in its header (refused "
            "before decoding) or does not decode (`undecodable_image`; it is kept as a dead "
            "letter); or both `Authorization` and `X-API-Key` sent (`ambiguous_credentials`)."
        ),
        413: _error("The image is over `ingest.max_image_bytes` (or the request over its limit)."),
        415: _error("The file is not a JPEG, PNG or WebP image, judged by its content."),
        503: _error("Ingest is not configured, its model cannot load, or storage is down."),
    },
)
async def ingest(
    caller: Operator,
    state: State,
    response: Response,
    service: Annotated[IngestService, Depends(_service)],
    limiter: Annotated[anyio.CapacityLimiter, Depends(_limiter)],
    file: Annotated[UploadFile, File(description="The image: JPEG, PNG or WebP.")],
    site: Annotated[SiteForm, _segment("site")],
    camera: Annotated[CameraForm, _segment("camera")],
    captured_at: Annotated[
        UtcTime | None,
        WithJsonSchema({"type": "string", "format": "date-time"}),  # optional, never null
        Form(description="When the image was taken (ISO 8601 with a zone); else now."),
    ] = None,
) -> IngestResult:
    """Detect objects in the image and process a crop of each, as edge crops are processed."""
    received_at = datetime.now(UTC)
    try:
        head = await file.read(SNIFF_BYTES)
        media_type = check_image_type(head, declared=file.content_type)
        limit = service.config.max_image_bytes
        data = head + await file.read(limit + 1 - len(head))  # one byte over tells enough
        check_image_size(max(len(data), file.size or 0), limit=limit)
        upload = Upload(
            data=data,
            media_type=media_type,
            site=site,
            camera=camera,
            captured_at=captured_at or received_at,
            received_at=received_at,
            uploaded_by=caller.name,
        )
        result = await anyio.to_thread.run_sync(_ingest, service, upload, state, limiter=limiter)
    except IngestError as err:
        raise _api_error(err) from err
    response.status_code = 201 if result.crops else 200
    return result


def _ingest(service: IngestService, upload: Upload, state: ApiState) -> IngestResult:
    """Ingest the upload and read its crops back as the results API shows them (blocking)."""
    done = service.ingest(upload)
    with state.sessions() as session:
        rows = session.scalars(
            select(Crop).where(Crop.crop_id.in_(done.crop_ids)).options(*item_loads())
        ).all()
        by_id = {row.crop_id: to_item(row) for row in rows}
    return IngestResult(
        site=upload.site,
        camera=upload.camera,
        captured_at=upload.captured_at,
        received_at=upload.received_at,
        media_type=upload.media_type,
        frame_width=done.frame_width,
        frame_height=done.frame_height,
        detections=done.detections,
        failed=done.failed,
        provenance=ProvenanceOut(
            **done.provenance.model_dump(),
            pipeline_name=done.pipeline_name,
            pipeline_version=done.pipeline_version,
        ),
        crops=[by_id[crop_id] for crop_id in done.crop_ids],
    )


def _api_error(err: IngestError) -> ApiError:
    """The API error an ingest error answers with (a load failure's details only logged)."""
    status, code = _STATUS.get(type(err), (500, "internal"))
    if isinstance(err, IngestUnavailableError):
        summary = f"ingest cannot load its {err.part} (tried again on the next upload)"
        return server_fault(status, code, summary, err)
    message = str(err)
    if isinstance(err, UndecodableImageError):
        message += f" (kept as dead letter {err.dead_letter_id})"
    return ApiError(status, code, message)
