"""Safe bulk edits: relabel a crop and the crops that look like it, after a preview.

``POST /v1/labels/similar/preview`` finds the crop's nearest neighbours with the image search
(``GET /v1/search/similar/{crop_id}``: its embeddings), keeps those at least
``min_similarity`` alike, and says what a relabel would change, grouped by current label and
review status. Crops a human reviewed (accepted, relabelled, rejected) are left alone unless
``include_human``; crops that already carry the label, and crops the node did not run on, are
counted. ``POST /v1/labels/similar`` takes the same body plus the preview's ``crop_ids`` as
``expect`` and applies it as ONE batch (one undo), or answers 409 ``preview_changed`` when the
set it would change is no longer exactly that.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from lensflow.cloud.api.auth import Operator
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError, server_fault
from lensflow.cloud.api.label_changes import (
    NodeState,
    change_all,
    currents,
    lock_crops,
    nodes_run,
    write_lock,
)
from lensflow.cloud.api.label_schemas import LabelSchemas
from lensflow.cloud.api.review_schemas import (
    SimilarApplyRequest,
    SimilarGroup,
    SimilarPreview,
    SimilarRelabelRequest,
)
from lensflow.cloud.api.routes.results import event_out
from lensflow.cloud.api.schemas import DETECTION_NODE, ErrorBody, LabelBatch
from lensflow.cloud.search.errors import SearchError
from lensflow.cloud.search.service import SearchService, SearchUnavailableError
from lensflow.cloud.storage.models import Crop

router = APIRouter(prefix="/v1/labels/similar", tags=["labels"])

MAX_NAMED = 10
"""Most crop ids a 409 names of each difference."""


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: _error("No such crop."),
    409: _error("The crop has no embedding from the search node (`not_embedded`)."),
    422: _error(
        "Body not as the schema says, or a label outside the node's label schema "
        "(`label_not_in_schema`, naming the allowed labels)."
    ),
    503: _error("Search is not configured, or its index or database failed."),
}


@dataclass
class _Plan:
    """What a bulk relabel would change."""

    groups: dict[tuple[str | None, str | None], SimilarGroup] = field(default_factory=dict)
    crops: list[Crop] = field(default_factory=list)
    skipped_human: int = 0
    unchanged: int = 0
    not_run: int = 0


@router.post("/preview", summary="Preview a relabel of similar crops", responses=_RESPONSES)
def preview(
    body: SimilarRelabelRequest,
    request: Request,
    _caller: Operator,
    session: DbSession,
    state: State,
) -> SimilarPreview:
    """What relabelling the crop and its look-alikes would change; nothing is written."""
    hits = _hits(session, _search(request), body)
    with session.begin():
        write_lock(session)  # the label schema may be stored first
        LabelSchemas.of(state).check_label(session, body.node, body.label)
        plan = _plan(session, hits, body)
    return SimilarPreview(
        node=body.node,
        label=body.label,
        threshold=body.min_similarity,
        groups=list(plan.groups.values()),
        crop_ids=[crop.crop_id for crop in plan.crops],
        skipped_human=plan.skipped_human,
        unchanged=plan.unchanged,
        not_run=plan.not_run,
    )


@router.post(
    "",
    summary="Relabel similar crops as previewed (one batch)",
    responses=_RESPONSES
    | {
        409: _error(
            "The crop has no embedding (`not_embedded`), or what the relabel would change is no "
            "longer what the preview said (`preview_changed`): preview again."
        )
    },
)
def apply(
    body: SimilarApplyRequest, request: Request, caller: Operator, session: DbSession, state: State
) -> LabelBatch:
    """Relabel exactly the previewed crops as one batch (``POST /v1/labels/undo`` reverts it)."""
    hits = _hits(session, _search(request), body)
    batch_id = uuid.uuid4().hex
    with session.begin():
        write_lock(session)
        LabelSchemas.of(state).check_label(session, body.node, body.label)
        lock_crops(session, [pk for pk, _ in hits])
        plan = _plan(session, hits, body)
        _check_expected(plan.crops, body.expect)
        new = NodeState(body.label, "relabelled")
        events = change_all(
            session, plan.crops, node=body.node, new=new, batch_id=batch_id, actor=caller.name
        )
    names = {crop.id: crop.crop_id for crop in plan.crops}
    return LabelBatch(
        batch_id=batch_id,
        actor=caller.name,
        changed=len(events),
        unchanged=len(plan.crops) - len(events),
        events=[event_out(e, crop_id=names[e.crop_pk]) for e in events],
    )


def _search(request: Request) -> SearchService:
    service: SearchService | None = getattr(request.app.state, "search", None)
    if service is None:
        raise ApiError(
            503,
            "search_unavailable",
            "relabelling similar crops needs image search: add a `search:` section to the "
            "cloud config",
        )
    return service


def _hits(
    session: Session, service: SearchService, body: SimilarRelabelRequest
) -> list[tuple[int, float]]:
    """The crop itself and its neighbours at least ``min_similarity`` alike, best first."""
    seed_pk = session.scalar(select(Crop.id).where(Crop.crop_id == body.crop_id))
    session.rollback()  # end the read: the search runs outside any transaction of ours
    if seed_pk is None:
        raise ApiError(404, "unknown_crop", f"expected a stored crop {body.crop_id!r}, got none")
    try:
        found = service.similar_to_crop(seed_pk, k=body.k)
    except SearchUnavailableError as err:
        raise ApiError(409, "not_embedded", f"crop {body.crop_id!r}: {err}") from err
    except SearchError as err:
        raise server_fault(503, "search_failed", "image search failed", err) from err
    near = [(n.crop_pk, n.score) for n in found if n.score >= body.min_similarity]
    return [(seed_pk, 1.0), *near]


def _plan(
    session: Session, hits: Sequence[tuple[int, float]], body: SimilarRelabelRequest
) -> _Plan:
    """Sort the hits into changes (grouped), skipped human reviews, unchanged and not run."""
    pks = [pk for pk, _ in hits]
    query = select(Crop).where(Crop.id.in_(pks)).options(selectinload(Crop.results))
    crops = {crop.id: crop for crop in session.scalars(query)}  # crops deleted since: gone
    ran = nodes_run(session, crops, node=body.node)
    rows = currents(session, crops, node=body.node)
    target = NodeState(body.label, "relabelled")
    plan = _Plan()
    for pk in dict.fromkeys(pks):
        crop = crops.get(pk)
        if crop is None:
            continue
        if pk not in ran:
            plan.not_run += 1
            continue
        state = rows[pk].state
        if state == target:
            plan.unchanged += 1
            continue
        if rows[pk].by_human and not body.include_human:
            plan.skipped_human += 1
            continue
        current = state.label if state.label is not None else _model_label(crop, body.node)
        group = plan.groups.setdefault(
            (current, state.status),
            SimilarGroup(
                current=current, status=state.status, human=rows[pk].by_human, crop_ids=[]
            ),
        )
        group.crop_ids.append(crop.crop_id)
        plan.crops.append(crop)
    return plan


def _model_label(crop: Crop, node: str) -> str | None:
    """The model's label of ``node`` (the edge class for ``detection``)."""
    if node == DETECTION_NODE:
        return crop.class_name
    return next((result.label for result in crop.results if result.node == node), None)


def _check_expected(crops: Sequence[Crop], expect: Sequence[str]) -> None:
    """409 ``preview_changed`` unless ``crops`` are exactly the crops ``expect`` names."""
    now = {crop.crop_id for crop in crops}
    previewed = set(expect)
    if now == previewed:
        return
    added = sorted(now - previewed)[:MAX_NAMED]
    gone = sorted(previewed - now)[:MAX_NAMED]
    raise ApiError(
        409,
        "preview_changed",
        f"expected to change exactly the {len(previewed)} previewed crops, got {len(now)}: "
        f"now also {', '.join(added) or 'none'}; no longer {', '.join(gone) or 'none'} "
        "(preview again)",
    )
