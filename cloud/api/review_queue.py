"""The review queue's sorts of ``GET /v1/results``, each with keyset pages.

Every sort orders by a leading key, ascending, then by ``(captured_at, id)`` in the request's
``order`` (newest first by default), so each crop has one place and a page starts strictly
after the previous page's last row, whatever is stored meanwhile:

- ``confidence_asc``: the model score of ``node`` (``detection``: the edge score), lowest
  first; crops without a score for the node (skipped, failed) last.
- ``disagreement``: crops where a cloud node's label names another class of the edge model
  than the crop's edge class first (see :func:`disagreement_first` and docs/labels.md).
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

from sqlalchemy import ColumnElement, and_, exists, false, not_, or_, select, tuple_
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
class QueueCursor:
    """Where the next page of a queue sort starts: after this key, capture time and id."""

    sort: QueueSort
    value: float
    captured_at: datetime
    pk: int


def disagreement_first(
    nodes: Sequence[str], detection_labels: Sequence[str]
) -> ColumnElement[bool]:
    """Whether an ``ok`` label of one of ``nodes`` is another detection class than the crop's.

    A cloud node disagrees with the edge when its label names a class of the edge model (one
    of ``detection_labels``) other than the crop's edge class: a ``truck`` from the vehicle
    type node for an edge ``car``. A label outside the edge's classes (``taxi``) says nothing
    about the detection and is no disagreement.
    """
    if not nodes or not detection_labels:
        return false()
    result = aliased(ClassifierResult)
    return exists(
        select(result.id).where(
            result.crop_pk == Crop.id,
            result.node.in_(list(nodes)),
            result.status == "ok",
            result.label.in_(list(detection_labels)),
            result.label != Crop.class_name,
        )
    )


def unreviewed_first(node: str | None) -> ColumnElement[bool]:
    """Whether the crop has no review status (of ``node``, else of any node)."""
    conditions = [CropReview.crop_pk == Crop.id]
    if node is not None:
        conditions.append(CropReview.node == node)
    return not_(exists(select(CropReview.id).where(*conditions)))


def _time_keys(order: Order) -> tuple[Any, Any]:
    if order == "desc":
        return Crop.captured_at.desc(), Crop.id.desc()
    return Crop.captured_at.asc(), Crop.id.asc()


def _after_time(order: Order, after: QueueCursor) -> ColumnElement[bool]:
    """Rows after the cursor's capture time and id, in ``order``."""
    row, last = tuple_(Crop.captured_at, Crop.id), tuple_(after.captured_at, after.pk)
    return row < last if order == "desc" else row > last


def confidence_page(
    session: Session,
    spec: ResultFilter,
    *,
    node: str | None,
    order: Order,
    after: QueueCursor | None,
    limit: int,
) -> list[tuple[Crop, float]]:
    """Crops matching ``spec`` by the score of ``node`` (lowest first), then capture order.

    The edge score is a column of the crop; a node's score is read by a join driven by the
    ``(node, score)`` index, then the crops whose result has no score follow (key
    :data:`NO_SCORE`).
    """
    if node is None or node == DETECTION_NODE:
        return _scored_page(session, spec, Crop.score.expression, None, order, after, limit)
    result = aliased(ClassifierResult)
    on = and_(result.crop_pk == Crop.id, result.node == node, result.score.is_not(None))
    rows: list[tuple[Crop, float]] = []
    if after is None or after.value < NO_SCORE:
        score = result.score.expression
        rows = _scored_page(session, spec, score, (result, on), order, after, limit)
    if len(rows) < limit:
        scored = exists(select(result.id).where(on))
        unscored = select(Crop).where(*filter_clauses(spec), not_(scored))
        if after is not None and after.value == NO_SCORE:
            unscored = unscored.where(_after_time(order, after))
        unscored = unscored.order_by(*_time_keys(order)).limit(limit - len(rows))
        rows += [(crop, NO_SCORE) for crop in session.scalars(unscored.options(*item_loads()))]
    return rows


def _scored_page(
    session: Session,
    spec: ResultFilter,
    value: ColumnElement[Any],
    join: tuple[Any, ColumnElement[bool]] | None,
    order: Order,
    after: QueueCursor | None,
    limit: int,
) -> list[tuple[Crop, float]]:
    """Crops by ``value`` ascending, then capture order, after ``after`` (an inner ``join``)."""
    query = select(Crop, value).where(*filter_clauses(spec))
    if join is not None:
        query = query.join(*join)
    if after is not None:
        tail = _after_time(order, after)
        query = query.where(or_(value > after.value, and_(value == after.value, tail)))
    query = query.order_by(value.asc(), *_time_keys(order)).limit(limit).options(*item_loads())
    return [(crop, float(score)) for crop, score in session.execute(query)]


def flag_page(
    session: Session,
    spec: ResultFilter,
    *,
    first: ColumnElement[bool],
    order: Order,
    after: QueueCursor | None,
    limit: int,
) -> list[tuple[Crop, float]]:
    """Crops matching ``spec`` where ``first`` holds (key 0), then the others (key 1).

    Each part is a plain keyset scan in capture order that stops at the page's end: a page
    costs about its own rows, not a sort of every crop.
    """
    rows: list[tuple[Crop, float]] = []
    for key, condition in ((0.0, first), (1.0, not_(first))):
        if after is not None and key < after.value:
            continue
        query = select(Crop).where(*filter_clauses(spec), condition)
        if after is not None and key == after.value:
            query = query.where(_after_time(order, after))
        query = query.order_by(*_time_keys(order)).limit(limit - len(rows))
        rows += [(crop, key) for crop in session.scalars(query.options(*item_loads()))]
        if len(rows) == limit:
            break
    return rows


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
        rows = confidence_page(session, spec, node=spec.node, order=order, after=after, limit=limit)
    else:
        if sort == "unreviewed_first":
            first = unreviewed_first(spec.node)
        else:
            nodes, classes = schemas.disagreement_nodes(session, node=spec.node)
            first = disagreement_first(nodes, classes)
        rows = flag_page(session, spec, first=first, order=order, after=after, limit=limit)
    crops = [crop for crop, _ in rows]
    if len(rows) < limit:
        return crops, None
    last, value = rows[-1]
    return crops, encode_queue_cursor(sort, value, last.captured_at, last.id)
