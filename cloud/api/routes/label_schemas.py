"""Label schemas: each node's labels in model order, with hotkeys and colours, by version.

``GET /v1/label-schemas`` lists the current schema of ``detection`` and of each node of the
active pipeline that has labels; ``GET /v1/label-schemas/{node}`` gives one (a stored
``?version=``, or the current one); ``POST /v1/label-schemas/{node}/labels`` adds a label as a
new version. Where the labels come from and how versions follow their sources is in
:mod:`lensflow.cloud.api.label_schemas` and docs/labels.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.deps import DbSession, State
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.api.label_changes import write_lock
from lensflow.cloud.api.label_schemas import LabelSchemas, schema_out, with_added_label
from lensflow.cloud.api.label_sources import PipelineView
from lensflow.cloud.api.review_schemas import AddLabelRequest, LabelSchemaList, LabelSchemaOut
from lensflow.cloud.api.schemas import ErrorBody, Name
from lensflow.cloud.storage.models import LabelSchemaVersion

router = APIRouter(prefix="/v1/label-schemas", tags=["label schemas"])

NodePath = Annotated[Name, Path(description="`detection` or a pipeline node's name.")]
MAX_VERSION = 2**31 - 1


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


@router.get("", summary="The label schema of every node")
def list_schemas(_caller: Viewer, session: DbSession, state: State) -> LabelSchemaList:
    """The current schema of ``detection`` and of each node of the active pipeline.

    Nodes without any label (an embedding node) are left out. A node's first read computes
    its schema from its sources and stores it as version 1.
    """
    schemas = LabelSchemas.of(state)
    pipeline = schemas.pipeline(session)
    nodes = pipeline.labelled_nodes()
    plans = [schemas.plan(session, node, pipeline=pipeline) for node in nodes]
    rows = [stored for stored, draft in plans if stored is not None and draft is None]
    if len(rows) < len(nodes):
        session.rollback()  # end the read; store the new versions under the write lock
        with session.begin():
            write_lock(session)
            rows = [schemas.current(session, node, pipeline=pipeline) for node in nodes]
    return LabelSchemaList(
        pipeline=pipeline.name, schemas=[schema_out(row) for row in rows if row.labels]
    )


@router.get(
    "/{node}",
    summary="One node's label schema",
    responses={404: _error("No such node, or no such version of its schema.")},
)
def get_schema(
    node: NodePath,
    _caller: Viewer,
    session: DbSession,
    state: State,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="A stored version; default: current.")
    ] = None,
) -> LabelSchemaOut:
    """The node's current schema (computed and stored first if its sources changed)."""
    schemas = LabelSchemas.of(state)
    pipeline = schemas.pipeline(session)
    _check_known(session, schemas, node, pipeline)
    if version is not None:
        row = schemas.stored(session, node, version=version)
        if row is None:
            raise ApiError(
                404,
                "unknown_version",
                f"expected a stored version of node {node!r}'s label schema, got {version}",
            )
        return schema_out(row)
    return schema_out(_current(session, schemas, node, pipeline))


@router.post(
    "/{node}/labels",
    status_code=201,
    summary="Add a label to a node's schema",
    responses={
        409: _error(
            "The schema has that label (`label_exists`), or it changed meanwhile (`conflict`)."
        ),
        422: _error(
            "Body not as the schema says, or a name that differs from an existing label only "
            "by case or surrounding spaces (`near_duplicate_label`, naming it)."
        ),
    },
)
def add_label(
    node: NodePath, body: AddLabelRequest, caller: Operator, session: DbSession, state: State
) -> LabelSchemaOut:
    """Append a label to the node's schema as a new version (201 with that version).

    Existing labels keep their ids, keys and colours; the new one gets the next id, the next
    free hotkey digit (or none) and ``color`` or the palette's colour of its id. A node the
    pipeline does not have yet (one an operator labels to train a head for it) starts its
    schema this way.
    """
    schemas = LabelSchemas.of(state)
    name = body.name.strip()
    with session.begin():
        write_lock(session)
        pipeline = schemas.pipeline(session)
        stored, computed = schemas.plan(session, node, pipeline=pipeline)
        after: LabelSchemaVersion | None
        if stored is None and computed is not None and not computed.labels:  # a new node
            current, after = LabelSchemaVersion(node=node, version=0, labels=[]), None
        else:
            current = schemas.current(session, node, pipeline=pipeline)
            after = current
        draft = with_added_label(current, name=name, color=body.color)
        row = schemas.store(session, node, draft, after=after, actor=caller.name)
        if row is None:
            raise ApiError(
                409, "conflict", f"the label schema of {node!r} changed meanwhile; try again"
            )
    return schema_out(row)


def _check_known(
    session: Session, schemas: LabelSchemas, node: str, pipeline: PipelineView
) -> None:
    """404 unless ``node`` is ``detection``, a pipeline node, or has results or a schema."""
    if not schemas.is_known(session, node, pipeline=pipeline):
        known = ", ".join(repr(name) for name in pipeline.labelled_nodes())
        raise ApiError(
            404,
            "unknown_node",
            f"expected {known} or a node with stored results, got {node!r}",
        )


def _current(
    session: Session, schemas: LabelSchemas, node: str, pipeline: PipelineView
) -> LabelSchemaVersion:
    """The node's current version; a new one is stored under the write lock if needed."""
    stored, draft = schemas.plan(session, node, pipeline=pipeline)
    if draft is None and stored is not None:
        return stored
    session.rollback()  # end the read; store under the write lock
    with session.begin():
        write_lock(session)
        return schemas.current(session, node, pipeline=pipeline)
