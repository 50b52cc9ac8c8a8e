"""Reading results: filtered keyset pages, one crop's detail, its JPEG, and aggregates."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import Field
from sqlalchemy import select

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError, server_fault
from lensflow.cloud.api.label_schemas import LabelSchemas
from lensflow.cloud.api.queries import (
    Bucket,
    GroupBy,
    ResultFilter,
    aggregate_query,
    decode_cursor,
    encode_cursor,
    item_loads,
    page_query,
    parse_bucket,
)
from lensflow.cloud.api.review_queue import Sort, queue_page
from lensflow.cloud.api.routes.models import router as model_cards_router
from lensflow.cloud.api.schemas import (
    CROP_ID_PATTERN,
    DETECTION_NODE,
    MAX_PAGE,
    AggregateRow,
    Aggregates,
    ClassifierOutput,
    DetectionOut,
    HumanLabelOut,
    LabelEventOut,
    Name,
    NodeLabel,
    Order,
    ProvenanceOut,
    ResultDetail,
    ResultItem,
    ResultPage,
    ReviewOut,
    ReviewStatus,
    Text,
    UtcTime,
)
from lensflow.cloud.storage.crops import Content, NotStoredError, Redirect
from lensflow.cloud.storage.errors import StorageError
from lensflow.cloud.storage.models import Crop, LabelEvent

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["results"])
# -- model cards: the name and precision of a crop's edge model, beside its hash (issue 16) --
router.include_router(model_cards_router)  # GET /v1/models/cards?sha256=

CropIdPath = Annotated[str, Field(pattern=CROP_ID_PATTERN, description="The crop id.")]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_BUCKETS = 10_000
"""Largest number of time buckets one aggregate request may span."""
_BUCKET = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_DEFAULT_SPAN = {"hour": timedelta(hours=48), "day": timedelta(days=30)}
_IMMUTABLE = "private, max-age=31536000, immutable"  # a crop id's JPEG never changes


def result_filter(
    site: Annotated[Name | None, Query(description="Site id.")] = None,
    camera: Annotated[
        Name | None, Query(description="Camera name (the same name may exist on several sites).")
    ] = None,
    class_name: Annotated[Text | None, Query(description="Edge detection class.")] = None,
    label: Annotated[Text | None, Query(description="A human or classifier label.")] = None,
    node: Annotated[
        Name | None, Query(description="Restrict `label` to this node (`detection` or a node).")
    ] = None,
    min_score: Annotated[Score | None, Query(description="Least detection score.")] = None,
    max_score: Annotated[Score | None, Query(description="Greatest detection score.")] = None,
    captured_from: Annotated[UtcTime | None, Query(description="Inclusive, ISO.")] = None,
    captured_to: Annotated[UtcTime | None, Query(description="Exclusive, ISO.")] = None,
    reviewed: Annotated[
        bool | None,
        Query(description="Has a review status (of `node` when given, else of any node)."),
    ] = None,
    disagreement: Annotated[
        bool | None, Query(description="A human label differs from the edge or classifier.")
    ] = None,
    status: Annotated[
        ReviewStatus | None,
        Query(description="Has this review status (of `node` when given, else of any node)."),
    ] = None,
) -> ResultFilter:
    """The result filter of a request's query parameters."""
    return ResultFilter(
        site=site,
        camera=camera,
        class_name=class_name,
        label=label,
        node=node,
        min_score=min_score,
        max_score=max_score,
        captured_from=captured_from,
        captured_to=captured_to,
        reviewed=reviewed,
        disagreement=disagreement,
        status=status,
    )


@router.get("/results", summary="List results (keyset pages)")
def list_results(
    _caller: Viewer,
    session: DbSession,
    state: State,
    spec: Annotated[ResultFilter, Depends(result_filter)],
    sort: Annotated[
        Sort,
        Query(
            description="`captured_at` (by `order`); review queues: `confidence_asc` (lowest "
            "score of `node` first), `disagreement` (cloud label names another edge class "
            "first), `unreviewed_first` (no status of `node`, else of any node, first); each "
            "then by capture time in `order`."
        ),
    ] = "captured_at",
    order: Annotated[Order, Query(description="By capture time.")] = "desc",
    cursor: Annotated[
        str | None, Query(max_length=256, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> ResultPage:
    """Crops matching the filters, newest first (or oldest, or in a review queue's order).

    Pages are keyset pages on ``(captured_at, id)``, after the queue's key for a review sort:
    crops stored while paging never cause duplicates or gaps.
    """
    if sort != "captured_at":
        queued, next_cursor = queue_page(
            session,
            LabelSchemas.of(state),
            spec,
            sort=sort,
            order=order,
            cursor=cursor,
            limit=limit,
        )
        return ResultPage(items=[to_item(crop) for crop in queued], next_cursor=next_cursor)
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except ValueError as err:
        raise ApiError(400, "invalid_cursor", str(err)) from err
    crops = session.scalars(page_query(spec, order=order, after=after, limit=limit)).all()
    last = crops[-1] if len(crops) == limit else None
    return ResultPage(
        items=[to_item(crop) for crop in crops],
        next_cursor=encode_cursor(last.captured_at, last.id) if last else None,
    )


@router.get("/results/{crop_id}", summary="One result in full")
def get_result(crop_id: CropIdPath, _caller: Viewer, session: DbSession) -> ResultDetail:
    """A crop with its edge detection, provenance, classifier outputs and human labels."""
    crop = _load_crop(session, crop_id)
    events = session.scalars(
        select(LabelEvent).where(LabelEvent.crop_pk == crop.id).order_by(LabelEvent.id)
    ).all()
    item = to_item(crop)
    return ResultDetail(
        **item.model_dump(),
        provenance=ProvenanceOut(
            model_sha256=crop.model_sha256,
            config_hash=crop.config_hash,
            agent_version=crop.agent_version,
            pipeline_name=crop.pipeline_name,
            pipeline_version=crop.pipeline_version,
        ),
        sent_at=crop.sent_at,
        jpeg_size=crop.jpeg_size,
        attributes=crop.attributes,
        outputs=[
            ClassifierOutput(
                node=r.node,
                plugin=r.plugin,
                plugin_version=r.plugin_version,
                status=r.status,
                label=r.label,
                score=r.score,
                output=r.payload,
                reason=r.reason,
                duration_ms=r.duration_ms,
                batch_size=r.batch_size,
            )
            for r in crop.results
        ],
        labels=[
            HumanLabelOut(node=h.node, label=h.label, actor=h.actor, labeled_at=h.created_at)
            for h in crop.human_labels
            if not h.undone
        ],
        history=[event_out(e, crop_id=crop.crop_id) for e in events],
    )


@router.get(
    "/crops/{crop_id}.jpg",
    summary="A crop's JPEG",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The JPEG."},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
        307: {"description": "Fetch it from this presigned URL (S3 store, `serve: redirect`)."},
    },
)
def get_crop_jpeg(
    crop_id: CropIdPath, request: Request, _caller: Viewer, session: DbSession, state: State
) -> Response:
    """The crop's JPEG bytes; ``ETag`` is their sha256, so ``If-None-Match`` gives 304."""
    sha256 = session.scalars(select(Crop.jpeg_sha256).where(Crop.crop_id == crop_id)).first()
    if sha256 is None:
        raise ApiError(404, "unknown_crop", f"expected a stored crop {crop_id!r}, got none")
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": _IMMUTABLE}
    if _etags(request.headers.get("if-none-match", "")) & {etag, "*"}:
        return Response(status_code=304, headers=headers)
    try:
        served = state.crops.serve(sha256)
    except NotStoredError as err:
        logger.warning("crop %s: its JPEG is not in the crop store: %s", crop_id, err)
        raise ApiError(
            404,
            "crop_missing",
            f"expected the JPEG of crop {crop_id!r} in the crop store, got none (the crop is "
            "stored, its image file is not)",
        ) from None
    except StorageError as err:
        summary = f"the JPEG of crop {crop_id!r} cannot be read from the crop store"
        raise server_fault(503, "storage_unavailable", summary, err) from err
    if isinstance(served, Redirect):  # the URL expires: the redirect itself is not cached
        redirect = {**headers, "Location": served.url, "Cache-Control": "no-store"}
        return Response(status_code=307, headers=redirect)
    if isinstance(served, Content):
        return Response(served.data, media_type="image/jpeg", headers=headers)
    return FileResponse(
        served.path, media_type="image/jpeg", headers=headers, stat_result=served.stat
    )


@router.get("/aggregates", summary="Crop counts per time bucket")
def get_aggregates(
    _caller: Viewer,
    session: DbSession,
    by: Annotated[GroupBy, Query(description="Group by site, camera, edge class or label.")],
    bucket: Annotated[Bucket, Query(description="Bucket width.")] = "day",
    start: Annotated[
        UtcTime | None, Query(alias="from", description="Inclusive; `to` - 48 h or 30 d.")
    ] = None,
    end: Annotated[UtcTime | None, Query(alias="to", description="Exclusive; now.")] = None,
    node: Annotated[
        Name, Query(description="With by=label: `detection` (human, else edge class) or a node.")
    ] = DETECTION_NODE,
    site: Annotated[Name | None, Query(description="Only this site's crops.")] = None,
) -> Aggregates:
    """How many crops were captured per bucket and site, camera, class or label (UTC buckets)."""
    end = end or datetime.now(UTC)
    try:
        start = start or end - _DEFAULT_SPAN[bucket]
    except OverflowError:  # `to` within the default span of year 1
        raise ApiError(
            400,
            "invalid_range",
            f"expected `to` after 0001-02-01 when `from` is left out, got {end}",
        ) from None
    if start >= end:
        raise ApiError(400, "invalid_range", f"expected from < to, got from={start} and to={end}")
    if (end - start) / _BUCKET[bucket] > MAX_BUCKETS:
        raise ApiError(
            400,
            "range_too_large",
            f"expected at most {MAX_BUCKETS} {bucket} buckets, got {start} to {end}",
        )
    dialect = session.get_bind().dialect.name
    query = aggregate_query(
        dialect, by=by, bucket=bucket, node=node, start=start, end=end, site=site
    )
    rows = [
        AggregateRow(bucket=parse_bucket(row.bucket), key=row.key, count=row.count)
        for row in session.execute(query)
    ]
    return Aggregates(by=by, bucket=bucket, start=start, end=end, rows=rows)


def _load_crop(session: DbSession, crop_id: str) -> Crop:
    """The crop with its results and labels, or 404."""
    crop = session.scalars(
        select(Crop).where(Crop.crop_id == crop_id).options(*item_loads())
    ).one_or_none()
    if crop is None:
        raise ApiError(404, "unknown_crop", f"expected a stored crop {crop_id!r}, got none")
    return crop


def _etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compared as strong)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def to_item(crop: Crop) -> ResultItem:
    """A crop as a result list item (its results and human labels must be loaded)."""
    return ResultItem(
        crop_id=crop.crop_id,
        site=crop.site,
        camera=crop.camera,
        captured_at=crop.captured_at,
        received_at=crop.received_at,
        detection=DetectionOut(
            class_name=crop.class_name,
            class_id=crop.class_id,
            score=crop.score,
            box=[crop.box_x1, crop.box_y1, crop.box_x2, crop.box_y2],
            frame_width=crop.frame_width,
            frame_height=crop.frame_height,
            track_id=crop.track_id,
            crop_box=crop.crop_box,
        ),
        classifiers={
            r.node: NodeLabel(status=r.status, label=r.label, score=r.score) for r in crop.results
        },
        human_labels={h.node: h.label for h in crop.human_labels if not h.undone},
        reviews=reviews_of(crop),
        jpeg_sha256=crop.jpeg_sha256,
        crop_url=f"/v1/crops/{crop.crop_id}.jpg",
    )


def event_out(event: LabelEvent, *, crop_id: str) -> LabelEventOut:
    """A label event as returned by the API."""
    return LabelEventOut(
        crop_id=crop_id,
        node=event.node,
        old_label=event.old_label,
        new_label=event.new_label,
        old_status=event.old_status,
        new_status=event.new_status,
        actor=event.actor,
        at=event.at,
        batch_id=event.batch_id,
    )


def reviews_of(crop: Crop) -> dict[str, ReviewOut]:
    """A crop's review statuses by node, each with the label it stands for."""
    human = {h.node: h.label for h in crop.human_labels if not h.undone}
    model = {r.node: r.label for r in crop.results}
    out = {}
    for review in crop.reviews:
        label: str | None = None
        if review.status == "relabelled":
            label = human.get(review.node)
        elif review.status == "accepted":
            label = crop.class_name if review.node == DETECTION_NODE else model.get(review.node)
        out[review.node] = ReviewOut(
            status=review.status,
            label=label,
            by=review.actor,
            at=review.at,
        )
    return out
