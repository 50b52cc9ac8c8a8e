"""Gather reviewed labels and embedding vectors from the results database.

A crop's reviewed label for a node is:

* its current human label (review status ``relabelled``), or
* the node's own stored label where an operator accepted it (status ``accepted``).

Crops reviewed ``rejected`` (not an object of any class) or ``unsure`` are left out, and so
are crops without a vector from the embedding node. Vectors of several embedding models
cannot be mixed: the most common model is used and the others are counted as skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from lensflow.cloud.heads.training import LabelledVectors, TrainingError
from lensflow.cloud.storage.models import (
    ClassifierResult,
    Crop,
    CropEmbedding,
    CropReview,
    HumanLabel,
)


@dataclass(frozen=True)
class Gathered:
    """The labelled vectors and what was left out, with counts."""

    data: LabelledVectors
    sources: dict[str, int]  # "relabelled" / "accepted" -> crops
    skipped: dict[str, int]  # why -> crops


def reviewed_labels(session: Session, node: str) -> dict[int, tuple[str, str]]:
    """``crop_pk -> (label, source)``: crops whose ``node`` label a human gave or accepted.

    A human label wins over an acceptance.
    """
    labels: dict[int, tuple[str, str]] = {}
    accepted = session.execute(
        select(CropReview.crop_pk, ClassifierResult.label)
        .join(
            ClassifierResult,
            and_(
                ClassifierResult.crop_pk == CropReview.crop_pk,
                ClassifierResult.node == CropReview.node,
                ClassifierResult.status == "ok",
            ),
        )
        .where(CropReview.node == node, CropReview.status == "accepted")
    )
    for crop_pk, label in accepted:
        if label is not None:
            labels[crop_pk] = (label, "accepted")
    human = session.execute(
        select(HumanLabel.crop_pk, HumanLabel.label)
        .join(
            CropReview,
            and_(CropReview.crop_pk == HumanLabel.crop_pk, CropReview.node == HumanLabel.node),
        )
        .where(
            HumanLabel.node == node,
            HumanLabel.undone.is_(False),
            CropReview.status == "relabelled",
        )
        .order_by(HumanLabel.id)
    )
    for crop_pk, label in human:  # the latest current label wins
        labels[crop_pk] = (label, "relabelled")
    return labels


def gather(
    session: Session, *, node: str, embedding_node: str, labels: Sequence[str] | None = None
) -> Gathered:
    """The reviewed crops of ``node`` with their ``embedding_node`` vectors.

    Args:
        session: A session on the results database.
        node: The node whose reviewed labels are the targets.
        embedding_node: The node whose vectors are the inputs.
        labels: Keep only these labels (None: all).

    Raises:
        TrainingError: No reviewed crop has a vector.

    """
    reviewed = reviewed_labels(session, node)
    skipped: Counter[str] = Counter()
    if labels is not None:
        wanted = set(labels)
        kept = {pk: v for pk, v in reviewed.items() if v[0] in wanted}
        skipped["label filtered out"] = len(reviewed) - len(kept)
        reviewed = kept
    rows = session.execute(
        select(Crop.id, Crop.crop_id, CropEmbedding.model, CropEmbedding.dim, CropEmbedding.vector)
        .join(CropEmbedding, CropEmbedding.crop_pk == Crop.id)
        .where(CropEmbedding.node == embedding_node, Crop.id.in_(list(reviewed)))
        .order_by(Crop.crop_id)
    ).all()
    skipped["no vector"] = len(reviewed) - len(rows)
    if not rows:
        raise TrainingError(
            f"expected reviewed crops of node {node!r} with vectors of node {embedding_node!r}, "
            f"found {len(reviewed)} reviewed and none with a vector"
        )
    model = Counter(row.model for row in rows).most_common(1)[0][0]
    same = [row for row in rows if row.model == model]
    skipped["another embedding model"] = len(rows) - len(same)
    vectors = np.stack([np.frombuffer(row.vector, dtype="<f4") for row in same])
    data = LabelledVectors(
        tuple(row.crop_id for row in same),
        vectors.astype(np.float32),
        tuple(reviewed[row.id][0] for row in same),
        model,
    )
    sources = Counter(reviewed[row.id][1] for row in same)
    return Gathered(data, dict(sources), {k: v for k, v in skipped.items() if v})
