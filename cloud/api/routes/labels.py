"""Relabelling crops, with an audit trail, and undoing a batch (of labels or statuses).

A relabel sets the current human label of ``(crop, node)`` on every crop named, with the
review status ``relabelled``, and writes one :class:`LabelEvent` (old -> new label and status,
the key's name as actor) per change, all under one ``batch_id``. The label must be one of the
node's label schema (``/v1/label-schemas``): anything else is refused with 422
``label_not_in_schema``. Undoing a batch (a relabel, a review or a bulk relabel) writes its own
events, under ``undo:<batch_id>``; a batch is undone at most once, and only while none of its
crops has been relabelled or reviewed since. The mechanics are in
:mod:`lensflow.cloud.api.label_changes`.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from lensflow.cloud.api.auth import Operator
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.label_changes import (
    UNDO_PREFIX,
    NodeState,
    change_all,
    check_node,
    crops_for_update,
    last_batch,
    undo_batch,
    write_lock,
)
from lensflow.cloud.api.label_schemas import LabelSchemas
from lensflow.cloud.api.routes.results import event_out
from lensflow.cloud.api.schemas import ErrorBody, LabelBatch, RelabelRequest, UndoRequest

router = APIRouter(prefix="/v1/labels", tags=["labels"])


@router.post(
    "",
    summary="Relabel one or many crops",
    responses={
        422: {
            "model": ErrorBody,
            "description": "Parameters or body not as the schema says; or a label outside "
            "the node's label schema (`label_not_in_schema`, naming the allowed labels).",
        }
    },
)
def relabel(body: RelabelRequest, caller: Operator, session: DbSession, state: State) -> LabelBatch:
    """Set ``label`` as the human label of ``node`` on every crop of ``crop_ids``."""
    batch_id = uuid.uuid4().hex
    with session.begin():
        write_lock(session)
        crops = crops_for_update(session, list(dict.fromkeys(body.crop_ids)))
        check_node(session, crops, node=body.node)
        LabelSchemas.of(state).check_label(session, body.node, body.label)
        new = NodeState(body.label, "relabelled")
        events = change_all(
            session, crops, node=body.node, new=new, batch_id=batch_id, actor=caller.name
        )
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
    summary="Undo a relabel or review batch",
    responses={
        409: {
            "model": ErrorBody,
            "description": "The batch was undone already (`already_undone`), or some of its "
            "crops were relabelled or reviewed since (`relabelled_since`).",
        }
    },
)
def undo(body: UndoRequest, caller: Operator, session: DbSession) -> LabelBatch:
    """Revert exactly one batch: ``batch_id``, or the caller's last one not undone.

    A batch is a relabel, a review (``POST /v1/reviews``) or a bulk relabel of similar crops;
    its labels and statuses are restored. Only admins may undo another key's batch. A batch
    some of whose crops were relabelled or reviewed since is not undone (409): undoing it
    would overwrite the newer decisions.
    """
    with session.begin():
        write_lock(session)
        batch_id = body.batch_id or last_batch(session, actor=caller.name)
        reverts, names = undo_batch(session, batch_id, caller=caller)
    return LabelBatch(
        batch_id=UNDO_PREFIX + batch_id,
        undoes=batch_id,
        actor=caller.name,
        changed=len(reverts),
        unchanged=0,
        events=[event_out(e, crop_id=names[e.crop_pk]) for e in reverts],
    )
