"""Changing what humans said about crops: labels and review statuses, audited and undoable.

The human state of a ``(crop, node)`` is a pair: its current human label (a ``human_labels``
row not ``undone``; one row per crop and node) and its review status (a ``crop_reviews`` row, or
none). A relabel makes it ``(label, relabelled)``; a review ``(None, accepted | rejected |
unsure)`` (the model's label is right, a wrong detection, skipped: no human label). Every
change writes one :class:`LabelEvent` with the old and new label and status, all events of one
request under one ``batch_id``; undoing a batch writes the reverse events under
``undo:<batch_id>``, at most once, and only while no crop of it changed since.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.keys import Principal
from lensflow.cloud.api.schemas import DETECTION_NODE
from lensflow.cloud.storage.models import (
    ClassifierResult,
    Crop,
    CropReview,
    HumanLabel,
    LabelEvent,
    LabelSchemaVersion,
    utcnow,
)

UNDO_PREFIX = "undo:"
_LAST_BATCHES = 50  # how far back "the caller's last batch" looks for one not yet undone


@dataclass(frozen=True)
class NodeState:
    """What humans said about one node of one crop: a label and a review status (or none)."""

    label: str | None = None
    status: str | None = None


@dataclass
class Current:
    """The rows holding a ``(crop, node)``'s human state (None: no row)."""

    human: HumanLabel | None = None
    review: CropReview | None = None

    @property
    def state(self) -> NodeState:
        """The state the rows say."""
        human = self.human
        label = None if human is None or human.undone else human.label
        return NodeState(label, self.review.status if self.review is not None else None)

    @property
    def by_human(self) -> bool:
        """A human decided: accepted, relabelled or rejected (``unsure`` decides nothing)."""
        state = self.state
        return state.label is not None or state.status in ("accepted", "relabelled", "rejected")


def write_lock(session: Session) -> None:
    """On SQLite, take the write lock now, so that the read-then-write is serialised."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def crops_for_update(session: Session, crop_ids: Sequence[str]) -> list[Crop]:
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


def nodes_run(session: Session, crop_pks: Iterable[int], *, node: str) -> set[int]:
    """Which of the crops have a result of ``node`` (every crop has the ``detection``)."""
    pks = set(crop_pks)
    if node == DETECTION_NODE:
        return pks
    return set(
        session.scalars(
            select(ClassifierResult.crop_pk).where(
                ClassifierResult.crop_pk.in_(pks), ClassifierResult.node == node
            )
        )
    )


def check_node(session: Session, crops: Sequence[Crop], *, node: str) -> None:
    """Refuse a node the crops have no result for (``detection`` always exists).

    A node with a stored label schema is labelled on any crop: it may be one operators are
    teaching (no crop has run it yet, a head will be trained from these labels) or one
    added after these crops were stored.
    """
    having = nodes_run(session, (crop.id for crop in crops), node=node)
    lacking = [crop.crop_id for crop in crops if crop.id not in having]
    schema = select(LabelSchemaVersion.id).where(LabelSchemaVersion.node == node).limit(1)
    if lacking and session.scalar(schema) is None:
        raise ApiError(
            400,
            "unknown_node",
            f"expected node {node!r} (or {DETECTION_NODE!r}) to have run on every crop, "
            f"got crops without it: {', '.join(lacking[:20])}",
        )


def currents(session: Session, crop_pks: Iterable[int], *, node: str) -> dict[int, Current]:
    """The human state rows of ``node`` for each crop (two queries for all of them)."""
    pks = set(crop_pks)
    found = {pk: Current() for pk in pks}
    humans = select(HumanLabel).where(HumanLabel.crop_pk.in_(pks), HumanLabel.node == node)
    for human in session.scalars(humans.order_by(HumanLabel.id)):
        found[human.crop_pk].human = human  # the latest, should there be several
    reviews = select(CropReview).where(CropReview.crop_pk.in_(pks), CropReview.node == node)
    for review in session.scalars(reviews):
        found[review.crop_pk].review = review
    return found


@dataclass(frozen=True)
class Change:
    """One change to apply: ``(crop, node)`` from state ``old`` to state ``new``."""

    crop_pk: int
    node: str
    old: NodeState
    new: NodeState
    batch_id: str


def apply(session: Session, current: Current, change: Change, *, actor: str) -> LabelEvent:
    """Make ``change.new`` the human state of its ``(crop, node)``; return its event."""
    now = utcnow()
    new = change.new
    human = current.human
    if new.label != change.old.label:
        if human is None:
            if new.label is not None:
                session.add(
                    HumanLabel(
                        crop_pk=change.crop_pk,
                        node=change.node,
                        label=new.label,
                        actor=actor,
                        created_at=now,
                    )
                )
        else:
            if new.label is None:
                human.undone = True
            else:
                human.label, human.undone = new.label, False
            human.actor, human.created_at = actor, now
    review = current.review
    if new.status is None:
        if review is not None:
            session.delete(review)
    elif review is None:
        session.add(
            CropReview(
                crop_pk=change.crop_pk, node=change.node, status=new.status, actor=actor, at=now
            )
        )
    else:
        review.status, review.actor, review.at = new.status, actor, now
    return LabelEvent(
        crop_pk=change.crop_pk,
        node=change.node,
        old_label=change.old.label,
        new_label=new.label,
        old_status=change.old.status,
        new_status=new.status,
        actor=actor,
        at=now,
        batch_id=change.batch_id,
    )


def change_all(
    session: Session,
    crops: Sequence[Crop],
    *,
    node: str,
    new: NodeState,
    batch_id: str,
    actor: str,
) -> list[LabelEvent]:
    """Bring every crop's ``node`` to state ``new`` (no event where it is already)."""
    rows = currents(session, (crop.id for crop in crops), node=node)
    events = []
    for crop in crops:
        current = rows[crop.id]
        if current.state != new:
            change = Change(crop.id, node, current.state, new, batch_id)
            events.append(apply(session, current, change, actor=actor))
    session.add_all(events)
    return events


def undo_batch(
    session: Session, batch_id: str, *, caller: Principal
) -> tuple[list[LabelEvent], dict[int, str]]:
    """Revert batch ``batch_id``'s events (newest first).

    Returns:
        The reverse events (written), and the crop ids of the batch's crops by pk.

    Raises:
        ApiError: 404 no such batch; 403 another key's batch (not an admin); 409 undone
            already, or some of its crops changed since.

    """
    events = _batch_events(session, batch_id, caller=caller)
    names = lock_crops(session, [event.crop_pk for event in events])
    _check_not_undone(session, batch_id)  # after the lock: a concurrent undo has committed
    rows: dict[tuple[int, str], Current] = {}
    for node in {event.node for event in events}:
        pks = [event.crop_pk for event in events if event.node == node]
        rows |= {(pk, node): row for pk, row in currents(session, pks, node=node).items()}
    reverts: list[LabelEvent] = []
    conflicts: list[str] = []
    for event in reversed(events):
        current = rows[(event.crop_pk, event.node)]
        after = NodeState(event.new_label, event.new_status)
        if current.state != after:
            conflicts.append(names[event.crop_pk])
            continue
        before = NodeState(event.old_label, event.old_status)
        change = Change(event.crop_pk, event.node, after, before, UNDO_PREFIX + batch_id)
        reverts.append(apply(session, current, change, actor=caller.name))
    if conflicts:
        raise ApiError(
            409,
            "relabelled_since",
            f"expected the labels and statuses of batch {batch_id} unchanged, got crops "
            f"relabelled or reviewed since: {', '.join(sorted(set(conflicts)))}",
        )
    session.add_all(reverts)
    return reverts, names


def last_batch(session: Session, *, actor: str) -> str:
    """The actor's latest batch (relabel or review) that has not been undone; 404 if none."""
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


def lock_crops(session: Session, crop_pks: Iterable[int]) -> dict[int, str]:
    """Lock the crops' rows (PostgreSQL) in id order; return their crop ids by pk."""
    rows = session.execute(
        select(Crop.id, Crop.crop_id)
        .where(Crop.id.in_(set(crop_pks)))
        .order_by(Crop.id)
        .with_for_update()
    ).all()
    return {row.id: row.crop_id for row in rows}
