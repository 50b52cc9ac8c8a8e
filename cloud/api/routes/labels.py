"""Relabelling crops, with an audit trail, and undoing a relabel batch.

A relabel sets the current human label of ``(crop, node)`` on every crop named and writes
one :class:`LabelEvent` (old -> new, the key's name as actor) per change, all under one
``batch_id``. ``human_labels`` holds one row per ``(crop, node)``: the current label, or
``undone`` when an undo took the crop back to no human label. An event's ``old_label`` is
the *human* label before (null: none), so an undo restores exactly that. Undoing a batch
writes its own events, under ``undo:<batch_id>``; a batch is undone at most once, and only
while none of its crops has been relabelled since.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lensflow.cloud.api.auth import Operator
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.keys import Principal
from lensflow.cloud.api.routes.results import event_out
from lensflow.cloud.api.schemas import (
    DETECTION_NODE,
    ErrorBody,
    LabelBatch,
    RelabelRequest,
    UndoRequest,
)
from lensflow.cloud.storage.models import ClassifierResult, Crop, HumanLabel, LabelEvent, utcnow

router = APIRouter(prefix="/v1/labels", tags=["labels"])

UNDO_PREFIX = "undo:"
_LAST_BATCHES = 50  # how far back "the caller's last batch" looks for one not yet undone


@router.post("", summary="Relabel one or many crops")
def relabel(body: RelabelRequest, caller: Operator, session: DbSession) -> LabelBatch:
    """Set ``label`` as the human label of ``node`` on every crop of ``crop_ids``."""
    batch_id = uuid.uuid4().hex
    with session.begin():
        _write_lock(session)
        crops = _crops(session, list(dict.fromkeys(body.crop_ids)))
        _check_node(session, crops, node=body.node)
        events: list[LabelEvent] = []
        for crop in crops:
            current = _current(session, crop_pk=crop.id, node=body.node)
            old = None if current is None or current.undone else current.label
            if old != body.label:
                change = _Change(crop.id, body.node, old=old, new=body.label, batch_id=batch_id)
                events.append(_apply(session, current, change, actor=caller.name))
        session.add_all(events)
    names = {crop.id: crop.crop_id for crop in crops}
    return LabelBatch(
        batch_id=batch_id,
        actor=caller.name,
        changed=len(events),
        unchanged=len(crops) - len(events),
        events=[event_out(e, crop_id=names[e.crop_pk]) for e in events],
    )


@router.post(
    "/undo",
    summary="Undo a relabel batch",
    responses={
        409: {
            "model": ErrorBody,
            "description": "The batch was undone already (`already_undone`), or some of its "
            "crops were relabelled since (`relabelled_since`).",
        }
    },
)
def undo(body: UndoRequest, caller: Operator, session: DbSession) -> LabelBatch:
    """Revert exactly one relabel batch: ``batch_id``, or the caller's last one not undone.

    Only admins may undo another key's batch. A batch some of whose crops were relabelled
    since is not undone (409): undoing it would overwrite the newer labels.
    """
    with session.begin():
        _write_lock(session)
        batch_id = body.batch_id or _last_batch(session, actor=caller.name)
        events = _batch_events(session, batch_id, caller=caller)
        names = _lock_crops(session, [event.crop_pk for event in events])
        _check_not_undone(session, batch_id)  # after the lock: a concurrent undo has committed
        reverts: list[LabelEvent] = []
        conflicts: list[str] = []
        for event in reversed(events):
            current = _current(session, crop_pk=event.crop_pk, node=event.node)
            if (None if current is None or current.undone else current.label) != event.new_label:
                conflicts.append(names[event.crop_pk])
                continue
            change = _Change(
                event.crop_pk,
                event.node,
                old=event.new_label,
                new=event.old_label,
                batch_id=UNDO_PREFIX + batch_id,
            )
            reverts.append(_apply(session, current, change, actor=caller.name))
        if conflicts:
            raise ApiError(
                409,
                "relabelled_since",
                f"expected the labels of batch {batch_id} unchanged, got crops relabelled "
                f"since: {', '.join(sorted(set(conflicts)))}",
            )
        session.add_all(reverts)
    return LabelBatch(
        batch_id=UNDO_PREFIX + batch_id,
        undoes=batch_id,
        actor=caller.name,
        changed=len(reverts),
        unchanged=0,
        events=[event_out(e, crop_id=names[e.crop_pk]) for e in reverts],
    )


def _write_lock(session: Session) -> None:
    """On SQLite, take the write lock now, so that the read-then-write is serialised."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def _crops(session: Session, crop_ids: Sequence[str]) -> list[Crop]:
    """The crops named, locked for update (PostgreSQL), by id; 404 naming any missing."""
    crops = session.scalars(
        select(Crop).where(Crop.crop_id.in_(crop_ids)).order_by(Crop.id).with_for_update()
    ).all()
    missing = sorted(set(crop_ids) - {crop.crop_id for crop in crops})
    if missing:
        raise ApiError(
            404, "unknown_crop", f"expected stored crops, got unknown ids: {', '.join(missing)}"
        )
    return list(crops)


def _check_node(session: Session, crops: Sequence[Crop], *, node: str) -> None:
    """Refuse a node the crops have no result for (``detection`` always exists)."""
    if node == DETECTION_NODE:
        return
    having = set(
        session.scalars(
            select(ClassifierResult.crop_pk).where(
                ClassifierResult.crop_pk.in_([crop.id for crop in crops]),
                ClassifierResult.node == node,
            )
        )
    )
    lacking = [crop.crop_id for crop in crops if crop.id not in having]
    if lacking:
        raise ApiError(
            400,
            "unknown_node",
            f"expected node {node!r} (or {DETECTION_NODE!r}) to have run on every crop, "
            f"got crops without it: {', '.join(lacking[:20])}",
        )


def _current(session: Session, *, crop_pk: int, node: str) -> HumanLabel | None:
    """The ``human_labels`` row of ``(crop, node)`` (the latest, should there be several)."""
    return session.scalars(
        select(HumanLabel)
        .where(HumanLabel.crop_pk == crop_pk, HumanLabel.node == node)
        .order_by(HumanLabel.id.desc())
        .limit(1)
    ).first()


@dataclass(frozen=True)
class _Change:
    """One label change to apply: ``(crop, node)`` from ``old`` to ``new`` (None: no label)."""

    crop_pk: int
    node: str
    old: str | None
    new: str | None
    batch_id: str


def _apply(
    session: Session, current: HumanLabel | None, change: _Change, *, actor: str
) -> LabelEvent:
    """Make ``change.new`` the current human label of its ``(crop, node)``; return its event."""
    now = utcnow()
    if current is None:
        if change.new is not None:
            session.add(
                HumanLabel(
                    crop_pk=change.crop_pk,
                    node=change.node,
                    label=change.new,
                    actor=actor,
                    created_at=now,
                )
            )
    else:
        if change.new is None:
            current.undone = True
        else:
            current.label, current.undone = change.new, False
        current.actor, current.created_at = actor, now
    return LabelEvent(
        crop_pk=change.crop_pk,
        node=change.node,
        old_label=change.old,
        new_label=change.new,
        actor=actor,
        at=now,
        batch_id=change.batch_id,
    )


def _last_batch(session: Session, *, actor: str) -> str:
    """The actor's latest relabel batch that has not been undone; 404 if none."""
    recent = session.execute(
        select(LabelEvent.batch_id, func.max(LabelEvent.id).label("last"))
        .where(LabelEvent.actor == actor, LabelEvent.batch_id.not_like(f"{UNDO_PREFIX}%"))
        .group_by(LabelEvent.batch_id)
        .order_by(func.max(LabelEvent.id).desc())
        .limit(_LAST_BATCHES)
    ).all()
    candidates: list[str] = [row.batch_id for row in recent if row.batch_id]
    undone = set(
        session.scalars(
            select(LabelEvent.batch_id).where(
                LabelEvent.batch_id.in_([UNDO_PREFIX + b for b in candidates])
            )
        )
    )
    for batch_id in candidates:
        if UNDO_PREFIX + batch_id not in undone:
            return batch_id
    raise ApiError(404, "no_batch", f"expected a relabel batch by {actor!r} to undo, got none")


def _batch_events(session: Session, batch_id: str, *, caller: Principal) -> list[LabelEvent]:
    """The events of a batch, in order; 404 if none, 403 if ``caller`` may not undo it."""
    events = list(
        session.scalars(
            select(LabelEvent).where(LabelEvent.batch_id == batch_id).order_by(LabelEvent.id)
        )
    )
    if not events:
        raise ApiError(404, "unknown_batch", f"expected a relabel batch {batch_id}, got none")
    owner = events[0].actor
    if owner != caller.name and not caller.has_role("admin"):
        raise ApiError(
            403,
            "forbidden",
            f"expected a batch of {caller.name!r} (or an admin key), got one of {owner!r}",
        )
    return events


def _check_not_undone(session: Session, batch_id: str) -> None:
    """409 if the batch was undone already."""
    undone = session.scalars(
        select(LabelEvent.id).where(LabelEvent.batch_id == UNDO_PREFIX + batch_id).limit(1)
    ).first()
    if undone is not None:
        raise ApiError(409, "already_undone", f"expected batch {batch_id} not undone, got undone")


def _lock_crops(session: Session, crop_pks: Sequence[int]) -> dict[int, str]:
    """Lock the crops' rows (PostgreSQL) in id order; return their crop ids by pk."""
    rows = session.execute(
        select(Crop.id, Crop.crop_id)
        .where(Crop.id.in_(set(crop_pks)))
        .order_by(Crop.id)
        .with_for_update()
    ).all()
    return {row.id: row.crop_id for row in rows}
