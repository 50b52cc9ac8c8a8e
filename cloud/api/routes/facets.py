"""Facets: the distinct values of the result filters, with counts, for the drop-downs.

Like the aggregates (``GET /v1/aggregates``), counts are of crops, optionally of one site and
a capture time range; a label is the current human label of the node, else the model's (for
``detection``: the edge class).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.orm import Session, aliased

from lensflow.cloud.api.auth import Viewer
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.review_schemas import CameraFacet, FacetCount, Facets
from lensflow.cloud.api.schemas import DETECTION_NODE, Name, UtcTime
from lensflow.cloud.storage.models import ClassifierResult, Crop, CropReview, HumanLabel

router = APIRouter(prefix="/v1", tags=["results"])

AnySelect = Select[*tuple[Any, ...]]


@router.get("/facets", summary="Filter values with counts")
def get_facets(
    _caller: Viewer,
    session: DbSession,
    site: Annotated[Name | None, Query(description="Only this site's crops.")] = None,
    captured_from: Annotated[UtcTime | None, Query(description="Inclusive, ISO.")] = None,
    captured_to: Annotated[UtcTime | None, Query(description="Exclusive, ISO.")] = None,
) -> Facets:
    """Cameras (with their site), edge classes, nodes, labels and review statuses per node.

    Each with how many crops have it; every list is ordered by value. ``nodes`` starts with
    ``detection`` (every crop), then each node with how many ``ok`` results it has.
    """
    if captured_from is not None and captured_to is not None and captured_from >= captured_to:
        raise ApiError(
            400,
            "invalid_range",
            f"expected captured_from < captured_to, got {captured_from} and {captured_to}",
        )
    where = _crop_conditions(site, captured_from, captured_to)
    cameras = session.execute(
        select(Crop.site, Crop.camera, func.count())
        .where(*where)
        .group_by(Crop.site, Crop.camera)
        .order_by(Crop.site, Crop.camera)
    ).all()
    classes = _counts(session, select(Crop.class_name, func.count()).where(*where), Crop.class_name)
    total = session.scalar(select(func.count()).select_from(Crop).where(*where)) or 0
    ok = select(ClassifierResult.node, func.count()).where(ClassifierResult.status == "ok")
    nodes = _counts(session, _of_crops(ok, where), ClassifierResult.node)
    return Facets(
        cameras=[CameraFacet(site=s, camera=c, count=n) for s, c, n in cameras],
        classes=classes,
        nodes=[FacetCount(value=DETECTION_NODE, count=total), *nodes] if total else nodes,
        labels=_labels(session, where),
        statuses=_statuses(session, where),
    )


def _crop_conditions(site: str | None, start: Any, end: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if site is not None:
        conditions.append(Crop.site == site)
    if start is not None:
        conditions.append(Crop.captured_at >= start)
    if end is not None:
        conditions.append(Crop.captured_at < end)
    return conditions


def _of_crops(query: AnySelect, where: list[ColumnElement[bool]], pk: Any = None) -> AnySelect:
    """``query`` limited to the crops ``where`` selects (joined on ``pk``, a ``crop_pk``)."""
    if not where:
        return query
    column = pk if pk is not None else ClassifierResult.crop_pk
    return query.join(Crop, Crop.id == column).where(*where)


def _counts(session: Session, query: AnySelect, key: Any) -> list[FacetCount]:
    rows = session.execute(query.where(key.is_not(None)).group_by(key).order_by(key)).all()
    return [FacetCount(value=value, count=count) for value, count in rows]


def _labels(session: Session, where: list[ColumnElement[bool]]) -> dict[str, list[FacetCount]]:
    """Per node, the current labels: a human one (not undone), else the model's."""
    if not where:
        return _all_labels(session)
    human = aliased(HumanLabel)
    detection = func.coalesce(human.label, Crop.class_name)
    on_detection = and_(
        human.crop_pk == Crop.id, human.node == DETECTION_NODE, human.undone.is_(False)
    )
    edge = session.execute(
        select(detection, func.count())
        .select_from(Crop)
        .outerjoin(human, on_detection)
        .where(*where)
        .group_by(detection)
    ).all()
    result = ClassifierResult
    label = func.coalesce(human.label, result.label)
    on_node = and_(
        human.crop_pk == result.crop_pk, human.node == result.node, human.undone.is_(False)
    )
    query = (
        select(result.node, label, func.count())
        .select_from(result)
        .outerjoin(human, on_node)
        .where(label.is_not(None))
    )
    rows = session.execute(_of_crops(query, where).group_by(result.node, label)).all()
    counts: Counter[tuple[str, str]] = Counter()
    for value, count in edge:
        counts[(DETECTION_NODE, value)] += count
    for node, value, count in rows:
        counts[(node, value)] += count
    return _by_node(counts)


def _all_labels(session: Session) -> dict[str, list[FacetCount]]:
    """The labels of every crop: the model's counted on their indexes, then the human ones.

    ``(class_name)`` and ``(node, label)`` are indexed, so the model's counts read indexes
    only; each current human label then moves one crop from its model label to its own.
    """
    counts: Counter[tuple[str, str]] = Counter()
    classes = select(Crop.class_name, func.count()).group_by(Crop.class_name)
    for value, count in session.execute(classes):
        counts[(DETECTION_NODE, value)] += count
    result = ClassifierResult
    models = (
        select(result.node, result.label, func.count())
        .where(result.label.is_not(None))
        .group_by(result.node, result.label)
    )
    for node, label, count in session.execute(models):
        if label is not None:
            counts[(node, label)] += count
    current = HumanLabel.undone.is_(False)
    edge = select(Crop.class_name, HumanLabel.label).join(Crop, Crop.id == HumanLabel.crop_pk)
    for edge_class, human in session.execute(
        edge.where(current, HumanLabel.node == DETECTION_NODE)
    ):
        counts[(DETECTION_NODE, edge_class)] -= 1
        counts[(DETECTION_NODE, human)] += 1
    on = and_(result.crop_pk == HumanLabel.crop_pk, result.node == HumanLabel.node)
    relabelled = select(HumanLabel.node, result.label, HumanLabel.label).join(result, on)
    for node, model, human in session.execute(relabelled.where(current)):
        if model is not None:
            counts[(node, model)] -= 1
        counts[(node, human)] += 1
    return _by_node(counts)


def _by_node(counts: Counter[tuple[str, str]]) -> dict[str, list[FacetCount]]:
    """Counts by (node, label) as lists per node, by label; zero counts left out."""
    labels: dict[str, list[FacetCount]] = defaultdict(list)
    for (node, value), count in sorted(counts.items()):
        if count > 0:
            labels[node].append(FacetCount(value=value, count=count))
    return dict(labels)


def _statuses(session: Session, where: list[ColumnElement[bool]]) -> dict[str, list[FacetCount]]:
    """Per node, how many crops have each review status."""
    query = select(CropReview.node, CropReview.status, func.count())
    rows = session.execute(
        _of_crops(query, where, CropReview.crop_pk)
        .group_by(CropReview.node, CropReview.status)
        .order_by(CropReview.node, CropReview.status)
    ).all()
    statuses: dict[str, list[FacetCount]] = defaultdict(list)
    for node, status, count in rows:
        statuses[node].append(FacetCount(value=status, count=count))
    return dict(statuses)
