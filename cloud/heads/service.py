"""Train, gate and store a head, and propose the pipeline version that uses it.

The baseline a head must beat, on the same held-out crops:

* the node's active head, when the base version runs the node as an ``embedding_head``;
* the node's stored labels, when the base version runs it with another plugin (what that
  plugin said about the held-out crops);
* the majority class of the training labels, for a node the base version does not have.

A head that passes is stored by its sha256 and a candidate version is stored (not active):
the base version with the node running the head (added, or its plugin replaced), so it can
be replayed and then activated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.heads.dataset import gather
from lensflow.cloud.heads.training import (
    Evaluation,
    GateVerdict,
    LabelledVectors,
    TrainingOptions,
    evaluate,
    fit,
    gate,
    majority_class,
    split,
)
from lensflow.cloud.storage.models import ClassifierResult, Crop, PipelineVersion
from lensflow.cloud.storage.models_loop import HeadRow
from lensflow.shared.classifiers.head_model import HeadModel
from lensflow.shared.errors import LensflowError

HEAD_PLUGIN = "embedding_head"


class HeadRefusedError(LensflowError):
    """The gate refused the head; carries the verdict."""

    def __init__(self, verdict: GateVerdict) -> None:
        self.verdict = verdict
        super().__init__("; ".join(verdict.reasons))


@dataclass(frozen=True)
class HeadRequest:
    """What to train: the node, its embedding node, the labels, how."""

    node: str
    embedding_node: str = "embedding"
    labels: list[str] | None = None
    options: TrainingOptions = field(default_factory=TrainingOptions)


@dataclass(frozen=True)
class HeadOutcome:
    """A stored head and the candidate version that uses it."""

    head: HeadModel
    sha256: str
    verdict: GateVerdict
    candidate_id: int
    candidate_sha256: str


def train_head(
    session: Session,
    request: HeadRequest,
    *,
    base: PipelineVersion,
    classes: list[str],
    actor: str,
) -> HeadOutcome:
    """Gather, split, fit, gate; store the head and the candidate version (one commit).

    Args:
        session: A session on the results database.
        request: What to train.
        base: The pipeline version the candidate extends (the active one).
        classes: The node's labels in schema order (the head's class ids).
        actor: Who asked (recorded).

    Raises:
        TrainingError: Too few labels (counts named).
        HeadRefusedError: The gate refused the head (reasons with numbers).

    """
    gathered = gather(
        session, node=request.node, embedding_node=request.embedding_node, labels=request.labels
    )
    order = [c for c in classes if c in set(gathered.data.labels)]
    order += sorted(set(gathered.data.labels) - set(order))  # labels no longer in the schema
    train, heldout = split(gathered.data, fraction=request.options.heldout_fraction)
    head = fit(train, classes=order, options=request.options)
    candidate = evaluate(head.predict(heldout.vectors), heldout.labels, order)
    baseline, reference, first = _baseline(
        session, request, base=base, train=train, heldout=heldout, order=order
    )
    verdict = gate(candidate, reference, baseline=baseline, first=first)
    if not verdict.passed:
        raise HeadRefusedError(verdict)
    card = {
        "node": request.node,
        "embedding_node": request.embedding_node,
        "embedding_model": gathered.data.embedding_model,
        "kind": request.options.kind,
        "classes": list(head.classes),
        "labels_from": gathered.sources,
        "left_out": gathered.skipped,
        "train_counts": dict(head.card["train_counts"]),
        "heldout": candidate.as_dict(),
        "split": {"fraction": request.options.heldout_fraction, "rule": "sha256(crop_id)"},
        "gate": verdict.as_dict(),
        "base_version": base.id,
        "trained_at": datetime.now(UTC).isoformat(),
        "trained_by": actor,
    }
    head = HeadModel(
        head.kind, head.classes, head.embedding_model, head.dim, head.arrays, head.k, card
    )
    body = head.to_bytes()
    digest = hashlib.sha256(body).hexdigest()
    text = candidate_text(
        base.yaml_text, node=request.node, embedding_node=request.embedding_node, head=digest
    )
    version = _store_version(session, base.name, text, actor=actor)
    row = session.get(HeadRow, digest) or HeadRow(
        sha256=digest,
        node=request.node,
        embedding_node=request.embedding_node,
        kind=head.kind,
        classes=list(head.classes),
        card=card,
        body=body,
        size=len(body),
        created_by=actor[:128],
    )
    row.candidate_id = version.id
    session.add(row)
    session.commit()
    return HeadOutcome(head, digest, verdict, version.id, version.sha256)


def _baseline(
    session: Session,
    request: HeadRequest,
    *,
    base: PipelineVersion,
    train: LabelledVectors,
    heldout: LabelledVectors,
    order: list[str],
) -> tuple[str, Evaluation, bool]:
    """What the candidate is compared with: ``(name, figures on held-out, is first head)``."""
    node = _node_of(base.yaml_text, request.node)
    if node is None:
        majority = majority_class(train)
        predictions: list[str | None] = [majority] * len(heldout.labels)
        return f"majority class {majority!r}", evaluate(predictions, heldout.labels, order), True
    if node.get("class") == HEAD_PLUGIN:
        digest = str((node.get("params") or {}).get("head", ""))
        row = session.get(HeadRow, digest)
        if row is not None:
            active = HeadModel.from_bytes(bytes(row.body), sha256=digest)
            if active.embedding_model == heldout.embedding_model:
                predicted: list[str | None] = list(active.predict(heldout.vectors))
                name = f"active head {digest[:12]}"
                return name, evaluate(predicted, heldout.labels, order), False
    stored = dict(
        session.execute(
            select(Crop.crop_id, ClassifierResult.label)
            .join(ClassifierResult, ClassifierResult.crop_pk == Crop.id)
            .where(
                ClassifierResult.node == request.node,
                ClassifierResult.status == "ok",
                Crop.crop_id.in_(list(heldout.crop_ids)),
            )
        ).all()
    )
    predictions = [stored.get(crop_id) for crop_id in heldout.crop_ids]
    name = f"active node {request.node!r} ({node.get('class')})"
    return name, evaluate(predictions, heldout.labels, order), False


def _node_of(text: str, name: str) -> dict[str, Any] | None:
    document = yaml.safe_load(text) or {}
    for node in document.get("pipeline", []):
        if isinstance(node, dict) and node.get("name") == name:
            return node
    return None


def candidate_text(base: str, *, node: str, embedding_node: str, head: str) -> str:
    """The base version's YAML with ``node`` running head ``head`` (added or replaced).

    A replaced node keeps its name, condition, batch and dependencies (plus the embedding
    node); its plugin and params become the head's. Comments of the base are not kept.
    """
    document = yaml.safe_load(base) or {}
    nodes: list[dict[str, Any]] = list(document.get("pipeline", []))
    params = {"head": head, "embedding": embedding_node}
    for entry in nodes:
        if entry.get("name") == node:
            deps = entry.get("depends_on") or []
            deps = [deps] if isinstance(deps, str) else list(deps)
            entry["depends_on"] = deps if embedding_node in deps else [*deps, embedding_node]
            entry["class"], entry["params"] = HEAD_PLUGIN, params
            entry.pop("labels", None)
            break
    else:
        nodes.append(
            {"name": node, "class": HEAD_PLUGIN, "depends_on": [embedding_node], "params": params}
        )
    document["pipeline"] = nodes
    return yaml.safe_dump(document, sort_keys=False)


def _store_version(session: Session, name: str, text: str, *, actor: str) -> PipelineVersion:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    row = session.scalars(
        select(PipelineVersion).where(
            PipelineVersion.name == name, PipelineVersion.sha256 == digest
        )
    ).first()
    if row is None:
        row = PipelineVersion(
            name=name, yaml_text=text, sha256=digest, created_by=actor[:128], active=False
        )
        session.add(row)
        session.flush()
    return row
