"""The API's read queries on the results schema: result filters, keyset pages, aggregates.

Portable SQL for SQLite and PostgreSQL. A crop's *current* human label for a node is its
``human_labels`` row for that node that is not ``undone`` (the label routes keep one row per
crop and node); its review status for a node is its ``crop_reviews`` row for that node.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, String, and_, exists, func, not_, or_, select, tuple_
from sqlalchemy.orm import aliased, selectinload

from lensflow.cloud.api.schemas import DETECTION_NODE, Order
from lensflow.cloud.storage.models import ClassifierResult, Crop, CropReview, HumanLabel

Bucket = Literal["hour", "day"]
GroupBy = Literal["site", "camera", "class", "label"]
_MAX_PK = 2**63 - 1


@dataclass(frozen=True)
class ResultFilter:
    """Which crops a result list shows; None means no condition."""

    site: str | None = None
    camera: str | None = None
    class_name: str | None = None
    label: str | None = None
    node: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    captured_from: datetime | None = None
    captured_to: datetime | None = None
    reviewed: bool | None = None
    disagreement: bool | None = None
    status: str | None = None


def _human(*, node: str | None = None, label: str | None = None) -> ColumnElement[bool]:
    """The crop has a current human label (for ``node``, equal to ``label``)."""
    conditions = [HumanLabel.crop_pk == Crop.id, HumanLabel.undone.is_(False)]
    if node is not None:
        conditions.append(HumanLabel.node == node)
    if label is not None:
        conditions.append(HumanLabel.label == label)
    return exists(select(HumanLabel.id).where(*conditions))


def _reviewed(*, node: str | None = None, status: str | None = None) -> ColumnElement[bool]:
    """The crop has a review status (of ``node``, equal to ``status``)."""
    conditions = [CropReview.crop_pk == Crop.id]
    if node is not None:
        conditions.append(CropReview.node == node)
    if status is not None:
        conditions.append(CropReview.status == status)
    return exists(select(CropReview.id).where(*conditions))


def _classified(*, node: str | None = None, label: str | None = None) -> ColumnElement[bool]:
    """The crop has an ``ok`` classifier result (of ``node``, with ``label``)."""
    conditions = [ClassifierResult.crop_pk == Crop.id, ClassifierResult.status == "ok"]
    if node is not None:
        conditions.append(ClassifierResult.node == node)
    if label is not None:
        conditions.append(ClassifierResult.label == label)
    return exists(select(ClassifierResult.id).where(*conditions))


def _disagreement() -> ColumnElement[bool]:
    """A current human label differs from the edge class or from its node's classifier label."""
    human = aliased(HumanLabel)
    result = aliased(ClassifierResult)
    differs_from_classifier = exists(
        select(result.id)
        .where(
            result.crop_pk == Crop.id,
            result.node == human.node,
            result.label.is_not(None),
            result.label != human.label,
        )
        .correlate_except(result)  # the label row is the enclosing query's, not a new one
    )
    differs = or_(
        and_(human.node == DETECTION_NODE, human.label != Crop.class_name),
        and_(human.node != DETECTION_NODE, differs_from_classifier),
    )
    return exists(
        select(human.id).where(human.crop_pk == Crop.id, human.undone.is_(False), differs)
    )


def _label_clause(label: str, node: str | None) -> ColumnElement[bool]:
    """The crop carries ``label`` from a human or a classifier (of ``node`` if given)."""
    if node == DETECTION_NODE:
        return or_(_human(node=node, label=label), Crop.class_name == label)
    return or_(_human(node=node, label=label), _classified(node=node, label=label))


def filter_clauses(spec: ResultFilter) -> list[ColumnElement[bool]]:
    """The WHERE clauses of a result filter (on ``Crop``)."""
    clauses: list[ColumnElement[bool]] = []
    if spec.site is not None:
        clauses.append(Crop.site == spec.site)
    if spec.camera is not None:
        clauses.append(Crop.camera == spec.camera)
    if spec.class_name is not None:
        clauses.append(Crop.class_name == spec.class_name)
    if spec.label is not None:
        clauses.append(_label_clause(spec.label, spec.node))
    elif spec.node is not None and spec.node != DETECTION_NODE:
        clauses.append(_classified(node=spec.node))
    if spec.min_score is not None:
        clauses.append(Crop.score >= spec.min_score)
    if spec.max_score is not None:
        clauses.append(Crop.score <= spec.max_score)
    if spec.captured_from is not None:
        clauses.append(Crop.captured_at >= spec.captured_from)
    if spec.captured_to is not None:
        clauses.append(Crop.captured_at < spec.captured_to)
    if spec.reviewed is not None:
        reviewed = _reviewed(node=spec.node)
        clauses.append(reviewed if spec.reviewed else not_(reviewed))
    if spec.status is not None:
        clauses.append(_reviewed(node=spec.node, status=spec.status))
    if spec.disagreement is not None:
        clauses.append(_disagreement() if spec.disagreement else not_(_disagreement()))
    return clauses


def encode_cursor(captured_at: datetime, pk: int) -> str:
    """The opaque cursor of the row after which the next page starts."""
    raw = json.dumps([captured_at.astimezone(UTC).isoformat(), pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Read back a cursor made by :func:`encode_cursor`.

    Raises:
        ValueError: If the cursor was not made by :func:`encode_cursor`.

    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, pk = json.loads(raw)
        captured_at = datetime.fromisoformat(stamp)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"expected a cursor from a previous page, got {cursor!r}") from err
    if captured_at.utcoffset() is None or type(pk) is not int or not 0 < pk <= _MAX_PK:
        raise ValueError(f"expected a cursor from a previous page, got {cursor!r}")
    try:
        return captured_at.astimezone(UTC), pk
    except OverflowError as err:  # before UTC's first instant: no page ever made it
        raise ValueError(f"expected a cursor from a previous page, got {cursor!r}") from err


def page_query(
    spec: ResultFilter, *, order: Order, after: tuple[datetime, int] | None, limit: int
) -> Select[Crop]:
    """Crops matching ``spec``, by ``(captured_at, id)``, after the keyset ``after``."""
    query = select(Crop).where(*filter_clauses(spec))
    if after is not None:
        at, pk = after
        # a row comparison: PostgreSQL seeks a (…, captured_at, id) index to the cursor
        key, cursor = tuple_(Crop.captured_at, Crop.id), tuple_(at, pk)
        query = query.where(key < cursor if order == "desc" else key > cursor)
    keys = (
        (Crop.captured_at.desc(), Crop.id.desc())
        if order == "desc"
        else (Crop.captured_at.asc(), Crop.id.asc())
    )
    return query.order_by(*keys).limit(limit).options(*item_loads())


def item_loads() -> tuple[Any, ...]:
    """The loader options a crop needs to become a result item (its results, labels, reviews)."""
    return (
        selectinload(Crop.results),
        selectinload(Crop.human_labels),
        selectinload(Crop.reviews),
    )


def _bucket_start(dialect: str, bucket: Bucket) -> ColumnElement[str]:
    """The UTC start of a crop's bucket as ``YYYY-MM-DD HH:MM:SS`` text, per dialect."""
    if dialect == "postgresql":
        truncated = func.date_trunc(bucket, func.timezone("UTC", Crop.captured_at))
        return func.to_char(truncated, "YYYY-MM-DD HH24:MI:SS", type_=String)
    # SQLite keeps UtcDateTime as naive UTC text, which strftime reads
    pattern = "%Y-%m-%d %H:00:00" if bucket == "hour" else "%Y-%m-%d 00:00:00"
    return func.strftime(pattern, Crop.captured_at, type_=String)


def _group_key(by: GroupBy, node: str) -> ColumnElement[Any]:
    """What ``by`` groups on; a label is the current human one, else the model's."""
    if by == "site":
        return Crop.site.expression
    if by == "camera":
        return Crop.camera.expression
    if by == "class":
        return Crop.class_name.expression
    human = (
        select(HumanLabel.label)
        .where(HumanLabel.crop_pk == Crop.id, HumanLabel.node == node, ~HumanLabel.undone)
        .order_by(HumanLabel.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    if node == DETECTION_NODE:
        return func.coalesce(human, Crop.class_name)
    model = (
        select(ClassifierResult.label)
        .where(ClassifierResult.crop_pk == Crop.id, ClassifierResult.node == node)
        .scalar_subquery()
    )
    return func.coalesce(human, model)


def aggregate_query(
    dialect: str,
    *,
    by: GroupBy,
    bucket: Bucket,
    node: str,
    start: datetime,
    end: datetime,
    site: str | None = None,
) -> Select[tuple[str, str | None, int]]:
    """Crop counts per (bucket start, group) for crops captured in ``[start, end)``.

    With ``site``, only that site's crops are counted (camera names repeat across sites).
    """
    conditions = [Crop.captured_at >= start, Crop.captured_at < end]
    if site is not None:
        conditions.append(Crop.site == site)
    rows = (
        select(
            _bucket_start(dialect, bucket).label("bucket"),
            _group_key(by, node).label("key"),
        )
        .where(*conditions)
        .subquery()
    )
    count = func.count().label("count")
    return (
        select(rows.c.bucket, rows.c.key, count)
        .group_by(rows.c.bucket, rows.c.key)
        .order_by(rows.c.bucket, rows.c.key)
    )


def parse_bucket(text: str) -> datetime:
    """Read a bucket start made by the aggregate query as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
