"""The review queue's sorts of ``GET /v1/results``, each with keyset pages.

Every sort orders by a leading key, ascending, then by ``(captured_at, id)`` in the request's
``order`` (newest first by default), so each crop has one place and a page starts strictly
after the previous page's last row, whatever is stored meanwhile:

- ``confidence_asc``: the model score of ``node`` (``detection``: the edge score), lowest
  first; crops without a score for the node (skipped, failed) last.
- ``disagreement``: crops where a cloud node's label names another class of the edge model
  than the crop's edge class first (see :func:`disagreement_key` and docs/labels.md).
- ``unreviewed_first``: crops without a review status (of ``node``, else of any node) first.

The cursor carries the sort, the last row's key value, capture time and id.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.label_schemas import LabelSchemas
from lensflow.cloud.api.queries import ResultFilter, filter_clauses, item_loads
from lensflow.cloud.api.schemas import DETECTION_NODE, Order
from lensflow.cloud.storage.models import ClassifierResult, Crop, CropReview

Sort = Literal["captured_at", "confidence_asc", "disagreement", "unreviewed_first"]
QueueSort = Literal["confidence_asc", "disagreement", "unreviewed_first"]
NO_SCORE = 1e300
"""The key of a crop without a score for the node: after every real score."""
_MAX_PK = 2**63 - 1


@dataclass(frozen=True)
class QueueKey:
    """A sort's leading key (ascending) and the outer join it needs, if any."""

    sort: QueueSort
    expression: ColumnElement[Any]
    join: tuple[Any, ColumnElement[bool]] | None = None


def confidence_key(node: str | None) -> QueueKey:
    """The model score of ``node`` (the edge score for ``detection`` or no node)."""
    if node is None or node == DETECTION_NODE:
        return QueueKey("confidence_asc", Crop.score.expression)
    result = aliased(ClassifierResult)
    on = and_(result.crop_pk == Crop.id, result.node == node)
    return QueueKey("confidence_asc", func.coalesce(result.score, NO_SCORE), (result, on))


def disagreement_key(nodes: Sequence[str], detection_labels: Sequence[str]) -> QueueKey:
    """0 where an ``ok`` label of one of ``nodes`` is another detection class, else 1.

    A cloud node disagrees with the edge when its label names a class of the edge model (one
    of ``detection_labels``) other than the crop's edge class: a ``truck`` from the vehicle
    type node for an edge ``car``. A label outside the edge's classes (``taxi``) says nothing
    about the detection and is no disagreement.
    """
    if not nodes or not detection_labels:
        return QueueKey("disagreement", literal(1))
    result = aliased(ClassifierResult)
    differs = exists(
        select(result.id).where(
            result.crop_pk == Crop.id,
            result.node.in_(list(nodes)),
            result.status == "ok",
            result.label.in_(list(detection_labels)),
            result.label != Crop.class_name,
        )
    )
    return QueueKey("disagreement", case((differs, 0), else_=1))


def unreviewed_key(node: str | None) -> QueueKey:
    """0 for a crop without a review status (of ``node``, else of any node), else 1."""
    conditions = [CropReview.crop_pk == Crop.id]
    if node is not None:
        conditions.append(CropReview.node == node)
    reviewed = exists(select(CropReview.id).where(*conditions))
    return QueueKey("unreviewed_first", case((reviewed, 1), else_=0))


@dataclass(frozen=True)
class QueueCursor:
    """Where the next page of a queue sort starts: after this key, capture time and id."""

    sort: QueueSort
    value: float
    captured_at: datetime
    pk: int


def queue_page_query(
    spec: ResultFilter, *, key: QueueKey, order: Order, after: QueueCursor | None, limit: int
) -> Select[tuple[Crop, Any]]:
    """Crops matching ``spec`` by ``key`` then ``(captured_at, id)``, after ``after``."""
    value = key.expression
    query = select(Crop, value.label("sort_value")).where(*filter_clauses(spec))
    if key.join is not None:
        target, on = key.join
        query = query.outerjoin(target, on)
    if after is not None:
        row, last = tuple_(Crop.captured_at, Crop.id), tuple_(after.captured_at, after.pk)
        tail = row < last if order == "desc" else row > last
        query = query.where(or_(value > after.value, and_(value == after.value, tail)))
    keys = (
        (Crop.captured_at.desc(), Crop.id.desc())
        if order == "desc"
        else (Crop.captured_at.asc(), Crop.id.asc())
    )
    return query.order_by(value.asc(), *keys).limit(limit).options(*item_loads())


def encode_queue_cursor(sort: QueueSort, value: float, captured_at: datetime, pk: int) -> str:
    """The opaque cursor of the row after which the next page of ``sort`` starts."""
    stamp = captured_at.astimezone(UTC).isoformat()
    raw = json.dumps([sort, value, stamp, pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_queue_cursor(cursor: str, *, sort: QueueSort) -> QueueCursor:
    """Read back a cursor made by :func:`encode_queue_cursor` for the same ``sort``.

    Raises:
        ValueError: If the cursor was not made by a page of this sort.

    """
    expected = f"expected a cursor from a previous page of sort={sort}, got {cursor!r}"
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, value, stamp, pk = json.loads(raw)
        parsed = datetime.fromisoformat(stamp)
        if parsed.utcoffset() is None:
            raise ValueError("a capture time without a zone")
        captured_at = parsed.astimezone(UTC)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        key = float(value) if numeric else math.nan
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as err:
        raise ValueError(expected) from err
    if made_for != sort or not math.isfinite(key) or type(pk) is not int or not 0 < pk <= _MAX_PK:
        raise ValueError(expected)
    return QueueCursor(sort, key, captured_at, pk)


def queue_page(
    session: Session,
    schemas: LabelSchemas,
    spec: ResultFilter,
    *,
    sort: QueueSort,
    order: Order,
    cursor: str | None,
    limit: int,
) -> tuple[list[Crop], str | None]:
    """One page of a review queue sort, and the cursor of the next (None: the last page).

    Raises:
        ApiError: 400 ``invalid_cursor`` for a cursor not made by a page of this sort.

    """
    try:
        after = decode_queue_cursor(cursor, sort=sort) if cursor is not None else None
    except ValueError as err:
        raise ApiError(400, "invalid_cursor", str(err)) from err
    if sort == "confidence_asc":
        key = confidence_key(spec.node)
    elif sort == "unreviewed_first":
        key = unreviewed_key(spec.node)
    else:
        nodes, classes = schemas.disagreement_nodes(session, node=spec.node)
        key = disagreement_key(nodes, classes)
    query = queue_page_query(spec, key=key, order=order, after=after, limit=limit)
    rows = session.execute(query).all()
    crops = [row[0] for row in rows]
    if len(rows) < limit:
        return crops, None
    last, value = rows[-1]
    return crops, encode_queue_cursor(sort, float(value), last.captured_at, last.id)
