"""The model registry: ``POST /v1/models`` uploads a bundle, ``GET`` lists and downloads them.

A bundle is an exported artifact folder as one tar (:mod:`lensflow.shared.model_bundle`),
named by its sha256. An upload (operator or admin) streams to a temporary file in the
bundles' folder, bounded by ``api.max_model_bytes`` (413 naming the limit); it is validated —
a model card, every file hashing as the card declares — and only then renamed into place and
listed, so a killed or refused upload leaves nothing visible. Any key lists the bundles with
their cards and downloads one (``ETag`` is the sha256; ``Range`` resumes a download). With an
S3 store (``crop_store: {type: s3}``) the validated upload is put in the bucket, and a
download is streamed from it or, with ``serve: redirect``, answered 307 to a presigned URL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError, server_fault
from lensflow.cloud.api.limits import BodyTooLargeError
from lensflow.cloud.storage.bundles import BundleStorage, ModelBundleRow
from lensflow.cloud.storage.crops import LocalFile, NotStoredError, ObjectStream, Redirect
from lensflow.cloud.storage.errors import RangeNotSatisfiableError, StorageError
from lensflow.shared.model_bundle import (
    BundleCard,
    BundleError,
    inspect_bundle,
    parse_card,
    sha256_file,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

PATH = "/v1/models"
"""The upload path, whose body limit is ``api.max_model_bytes``."""
MEDIA_TYPE = "application/x-tar"
Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The bundle's sha256.")]


class BundleOut(BaseModel):
    """A model bundle in the registry, with what its card says."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(description="The bundle's sha256: `detector.model: sha256:<this>`.")
    size: int = Field(description="Bundle bytes.")
    name: str = Field(description="The model's name.")
    family: str = Field(description="Detector family: yolo, ssd or ssd-tflite.")
    format: str = Field(description="Artifact format (onnx, openvino, tflite...).")
    precision: str = Field(description="Precision of the weights.")
    input_size: tuple[int, int] = Field(description="Height and width the model expects.")
    classes: dict[int, str] = Field(description="Class id to name.")
    licence: str | None = Field(description="The weights' licence, when the card names one.")
    accuracy: dict[str, Any] | None = Field(description="The accuracy gate's result, if any.")
    source: str | None = Field(description="Where the weights came from.")
    created_at: datetime = Field(description="When it was uploaded.")
    created_by: str = Field(description="The name of the key that uploaded it.")


class BundleList(BaseModel):
    """The registry's bundles, newest first."""

    items: list[BundleOut]


def bundles_of(state: State) -> BundleStorage:
    """The bundle store beside the crops (``crop_store:``)."""
    return state.bundles


@router.post(
    "",
    status_code=201,
    summary="Upload a model bundle",
    responses={200: {"description": "Already in the registry (same sha256)."}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_bundle(
    request: Request, response: Response, state: State, session: DbSession, caller: Operator
) -> BundleOut:
    """Store a bundle (the request body: a tar made by ``lensflow models push``)."""
    store = bundles_of(state)
    limit = state.config.api.max_model_bytes
    temp = store.temp_file()
    try:
        await _receive(request, temp, limit=limit)
        sha256, card = await anyio.to_thread.run_sync(_validate, temp)
        existing = session.get(ModelBundleRow, sha256)
        if existing is not None:
            response.status_code = 200
            return to_out(existing)
        size = temp.stat().st_size
        try:
            await anyio.to_thread.run_sync(store.commit, temp, sha256)
        except StorageError as err:
            summary = f"model bundle {sha256} cannot be written to the store"
            raise server_fault(503, "storage_unavailable", summary, err) from err
    finally:
        temp.unlink(missing_ok=True)
    row = ModelBundleRow(
        sha256=sha256, name=card.name[:256], size=size, card=card.raw, created_by=caller.name
    )
    session.add(row)
    session.commit()
    return to_out(row)


@router.get("", summary="The model bundles in the registry")
def list_bundles(session: DbSession, _caller: Viewer) -> BundleList:
    """Every bundle with its card, newest first."""
    rows = session.scalars(select(ModelBundleRow).order_by(ModelBundleRow.created_at.desc()))
    return BundleList(items=[to_out(row) for row in rows])


@router.get(
    "/{sha256}/bundle",
    summary="Download a model bundle",
    response_class=FileResponse,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The bundle."},
        206: {"content": {MEDIA_TYPE: {}}, "description": "The requested byte range."},
        307: {"description": "Fetch it from this presigned URL (S3 store, `serve: redirect`)."},
        416: {"description": "The range starts at the bundle's end: a resumed download is whole."},
    },
)
def download_bundle(
    sha256: Sha256, request: Request, state: State, session: DbSession, _caller: Viewer
) -> Any:
    """The bundle's bytes; ``ETag`` is its sha256 and ``Range`` requests resume a download."""
    unknown = ApiError(
        404, "unknown_model", f"expected a model bundle with sha256 {sha256}, got none"
    )
    if session.get(ModelBundleRow, sha256) is None:
        raise unknown
    try:
        served = bundles_of(state).serve(sha256, byte_range=request.headers.get("range"))
    except NotStoredError:
        raise unknown from None
    except RangeNotSatisfiableError as err:  # a resumed download already whole: as FileResponse
        return PlainTextResponse(status_code=416, headers={"Content-Range": f"bytes */{err.size}"})
    except StorageError as err:
        summary = f"model bundle {sha256} cannot be read from the store"
        raise server_fault(503, "storage_unavailable", summary, err) from err
    headers = {"ETag": f'"{sha256}"', "Cache-Control": "private, immutable"}
    return _bundle_response(served, sha256=sha256, headers=headers)


def _bundle_response(
    served: LocalFile | Redirect | ObjectStream, *, sha256: str, headers: dict[str, str]
) -> Response:
    """The download's answer: the file (ranges included), a 307, or the streamed object."""
    if isinstance(served, Redirect):  # the URL expires: the redirect itself is not cached
        redirect = {**headers, "Location": served.url, "Cache-Control": "no-store"}
        return Response(status_code=307, headers=redirect)
    if isinstance(served, LocalFile):
        return FileResponse(
            served.path,
            media_type=MEDIA_TYPE,
            filename=f"{sha256}.tar",
            headers=headers,
            stat_result=served.stat,
        )
    headers |= {
        "Content-Length": str(served.size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{sha256}.tar"',
    }
    if served.content_range is not None:
        headers["Content-Range"] = served.content_range
    return StreamingResponse(
        served.chunks,
        status_code=206 if served.content_range is not None else 200,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def to_out(row: ModelBundleRow) -> BundleOut:
    """The API's view of a stored bundle (its card is re-read: it was valid when stored)."""
    card = _card_fields(row.card)
    return BundleOut(
        sha256=row.sha256,
        size=row.size,
        created_at=row.created_at,
        created_by=row.created_by,
        **card,
    )


def _card_fields(raw: dict[str, Any]) -> dict[str, Any]:
    card = parse_card(json.dumps(raw).encode())
    return {
        "name": card.name,
        "family": card.family,
        "format": card.format,
        "precision": card.precision,
        "input_size": card.input_size,
        "classes": card.classes,
        "licence": card.licence,
        "accuracy": card.accuracy,
        "source": card.source,
    }


async def _receive(request: Request, temp: FilePath, *, limit: int) -> None:
    """Stream the body to ``temp``, refusing more than ``limit`` bytes."""
    received = 0
    with temp.open("wb") as out:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLargeError(
                    limit=limit, got=f"at least {received} bytes", setting="api.max_model_bytes"
                )
            out.write(chunk)
    if received == 0:
        raise ApiError(400, "invalid_bundle", "expected a model bundle (a tar), got an empty body")


def _validate(temp: FilePath) -> tuple[str, BundleCard]:
    """The upload's sha256 and card, or a 400 saying what is wrong with it."""
    try:
        card = inspect_bundle(temp)
    except BundleError as err:
        raise ApiError(400, "invalid_bundle", str(err)) from err
    return sha256_file(temp), card
