"""Review statuses: accept the model's label, reject a wrong detection, or skip for now.

A status is not a class: ``accepted``, ``rejected`` and ``unsure`` say what a human made of the
model's answer, and clear any human label of the node; ``relabelled`` comes with a relabel
(``POST /v1/labels``). Statuses are audited in the label events like labels, one batch per
request, and undone with ``POST /v1/labels/undo`` like a relabel.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from lensflow.cloud.api.auth import Operator
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.label_changes import (
    NodeState,
    change_all,
    check_node,
    crops_for_update,
    write_lock,
)
from lensflow.cloud.api.review_schemas import ReviewRequest
from lensflow.cloud.api.routes.results import event_out
from lensflow.cloud.api.schemas import LabelBatch

router = APIRouter(prefix="/v1/reviews", tags=["labels"])


@router.post("", summary="Set a review status on one or many crops")
def review(body: ReviewRequest, caller: Operator, session: DbSession) -> LabelBatch:
    """Set ``status`` as the review of ``node`` on every crop of ``crop_ids``, as one batch.

    ``accepted``: the model's label is right (for ``detection``, the edge class);
    ``rejected``: a wrong detection, not an object of any class; ``unsure``: skipped for
    now. Any human label of the node is cleared (an undo of the batch restores it). Crops
    that already have the status are left unchanged (no event).
    """
    batch_id = uuid.uuid4().hex
    with session.begin():
        write_lock(session)
        crops = crops_for_update(session, list(dict.fromkeys(body.crop_ids)))
        check_node(session, crops, node=body.node)
        new = NodeState(None, body.status)
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
