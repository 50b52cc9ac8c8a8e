"""Heads trained from reviewed labels: ``POST /v1/heads`` trains, gates, stores, proposes.

A head is a small classifier (logistic regression or k-NN) over an upstream node's embedding
vectors, trained from the human labels of a node under its label schema
(:mod:`lensflow.cloud.heads`). A head that beats the gate is stored by its sha256, and a
candidate pipeline version that runs it is stored, not active: replay it
(``POST /v1/pipelines/{id}/replay``), then activate it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.label_schemas import LabelSchemas
from lensflow.cloud.heads.service import HeadRefusedError, HeadRequest, train_head
from lensflow.cloud.heads.training import TrainingError, TrainingOptions
from lensflow.cloud.storage.models import PipelineVersion
from lensflow.cloud.storage.models_loop import HeadRow

router = APIRouter(prefix="/v1/heads", tags=["heads"])

NodeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]


class HeadCreate(BaseModel):
    """What to train a head on, and how."""

    model_config = ConfigDict(extra="forbid")

    node: NodeName = Field(description="The node whose reviewed labels the head learns.")
    embedding: NodeName = Field("embedding", description="The node whose vectors it reads.")
    labels: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        None, max_length=1000, description="Learn only these labels (default: all reviewed)."
    )
    kind: Literal["logistic", "knn"] = Field("logistic", description="The head's model.")
    k: int = Field(5, ge=1, le=100, description="Neighbours that vote (knn).")
    c: float = Field(1.0, gt=0, le=10_000, description="Inverse regularisation (logistic).")
    min_per_class: int = Field(5, ge=2, le=10_000, description="Fewest training labels a class.")
    heldout_fraction: float = Field(0.2, ge=0.05, le=0.5, description="Crops held out.")
    pipeline: NodeName | None = Field(
        None, description="The pipeline name whose active version the candidate extends."
    )


class CandidateOut(BaseModel):
    """The pipeline version that runs the head (stored, not active)."""

    id: int
    sha256: str


class HeadOut(BaseModel):
    """A stored head and its model card."""

    sha256: str = Field(description="The head's name: sha256 of its file.")
    node: str
    embedding_node: str
    kind: str
    classes: list[str] = Field(description="Its classes in schema order (its class ids).")
    card: dict[str, Any] = Field(
        description="Data (labels_from, left_out, train_counts), held-out figures (accuracy, "
        "macro_f1, per_class, confusion), the gate's verdict, the base version."
    )
    created_at: datetime
    created_by: str
    candidate: CandidateOut | None


@router.post("", status_code=201, summary="Train a head from reviewed labels")
def create_head(body: HeadCreate, caller: Operator, session: DbSession, state: State) -> HeadOut:
    """Train, gate and store a head; store the candidate version that runs it (201).

    422 ``too_few_labels`` when a class has too few labels (counts named), 422
    ``head_refused`` when it does not beat the baseline on the held-out crops (numbers named).
    """
    schemas = LabelSchemas.of(state)
    view = schemas.pipeline(session)
    base = _base_version(session, body.pipeline or view.name, named=body.pipeline is not None)
    classes = schemas.names(session, body.node, pipeline=view)
    options = TrainingOptions(
        kind=body.kind,
        k=body.k,
        c=body.c,
        min_per_class=body.min_per_class,
        heldout_fraction=body.heldout_fraction,
    )
    request = HeadRequest(body.node, body.embedding, body.labels, options)
    try:
        outcome = train_head(session, request, base=base, classes=classes, actor=caller.name)
    except TrainingError as err:
        raise ApiError(422, "too_few_labels", str(err)) from err
    except HeadRefusedError as err:
        raise ApiError(422, "head_refused", f"the head is refused: {err}") from err
    row = session.get(HeadRow, outcome.sha256)
    if row is None:  # committed just now by train_head
        raise ApiError(409, "conflict", "the head was removed meanwhile; try again")
    return _out(session, row)


@router.get("", summary="List heads")
def list_heads(_caller: Viewer, session: DbSession, node: str | None = None) -> list[HeadOut]:
    """Stored heads, newest first (``?node=`` for one node's)."""
    query = select(HeadRow).order_by(HeadRow.created_at.desc()).limit(200)
    if node is not None:
        query = query.where(HeadRow.node == node)
    return [_out(session, row) for row in session.scalars(query)]


@router.get("/{sha256}", summary="One head and its model card")
def get_head(
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The head's sha256.")],
    _caller: Viewer,
    session: DbSession,
) -> HeadOut:
    """The head's card (its weights are served to workers only, through the database)."""
    row = session.get(HeadRow, sha256)
    if row is None:
        raise ApiError(404, "unknown_head", f"expected a stored head, got {sha256}")
    return _out(session, row)


def _base_version(session: Session, name: str | None, *, named: bool) -> PipelineVersion:
    """The active version of ``name``, else (a name not asked for) the only active one."""
    active = select(PipelineVersion).where(PipelineVersion.active.is_(True))
    rows = session.scalars(active.where(PipelineVersion.name == name)).all() if name else []
    if not rows and not named:
        rows = session.scalars(active.order_by(PipelineVersion.id.desc()).limit(2)).all()
        if len(rows) > 1:
            names = ", ".join(sorted({row.name for row in rows}))
            raise ApiError(
                422,
                "pipeline_required",
                f"expected 'pipeline' naming the pipeline to extend, got none (active: {names})",
            )
    if not rows:
        raise ApiError(
            409,
            "no_active_pipeline",
            f"expected an active version of pipeline {name!r} to extend (a worker seeds the "
            "first one when it starts), found none",
        )
    return rows[0]


def _out(session: Session, row: HeadRow) -> HeadOut:
    version = session.get(PipelineVersion, row.candidate_id) if row.candidate_id else None
    candidate = CandidateOut(id=version.id, sha256=version.sha256) if version else None
    return HeadOut(
        sha256=row.sha256,
        node=row.node,
        embedding_node=row.embedding_node,
        kind=row.kind,
        classes=list(row.classes),
        card=dict(row.card),
        created_at=row.created_at,
        created_by=row.created_by,
        candidate=candidate,
    )
