"""Edge configs (validate, version, assign) and edges (status, heartbeat counters, config acks).

The database holds each edge's desired config; assigning a version wakes the control plane
(:mod:`lensflow.cloud.control.reconciler`), which publishes it to the edges and records their acks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import select

from lensflow.cloud.api.auth import Operator, Viewer
from lensflow.cloud.api.control_schemas import (
    SEGMENT,
    AssignmentOut,
    AssignRequest,
    ConfigCreate,
    ConfigText,
    ConfigValidation,
    ConfigVersionOut,
    EdgeOut,
    issues_out,
)
from lensflow.cloud.api.deps import DbSession
from lensflow.cloud.api.errors import ApiError
from lensflow.cloud.control.configs import ConfigService, validate_edge_config
from lensflow.cloud.control.reconciler import Reconciler
from lensflow.cloud.control.rollouts import RolloutService
from lensflow.cloud.storage.models import Edge, EdgeConfigAssignment, EdgeConfigVersion, utcnow
from lensflow.shared.errors import ConfigError

configs_router = APIRouter(prefix="/v1/configs", tags=["configs"])
edges_router = APIRouter(prefix="/v1/edges", tags=["edges"])

SegmentPath = Annotated[str, Path(pattern=SEGMENT)]
MAX_LIST = 500
MAX_ID = 2**63 - 1
VersionId = Annotated[int, Path(ge=1, le=MAX_ID, description="A config version id.")]


@dataclass(frozen=True)
class ControlState:
    """What these routes need: configs, rollouts, the control plane if it runs."""

    configs: ConfigService
    rollouts: RolloutService
    reconciler: Reconciler | None
    offline_after_s: float


def get_control(request: Request) -> ControlState:
    """The app's :class:`ControlState`."""
    control: ControlState = request.app.state.control
    return control


Control = Annotated[ControlState, Depends(get_control)]


@configs_router.post("/validate", summary="Validate an edge config")
def validate(body: ConfigText, _caller: Operator) -> ConfigValidation:
    """Check a config text as the agents will; give its hash or every problem with its line."""
    try:
        checked = validate_edge_config(body.text)
    except ConfigError as err:
        return ConfigValidation(valid=False, issues=issues_out(err))
    return ConfigValidation(valid=True, config_hash=checked.config_hash, issues=[])


@configs_router.post("", status_code=201, summary="Create an edge config version")
def create_version(body: ConfigCreate, caller: Operator, control: Control) -> ConfigVersionOut:
    """Store a validated config text as a new version (assign it to edges to roll it out)."""
    try:
        row = control.configs.create_version(
            body.text, created_by=caller.name, comment=body.comment
        )
    except ConfigError as err:
        raise ApiError(400, "invalid_config", f"the config is not valid: {err}") from err
    return _version_out(row)


@configs_router.get("", summary="List edge config versions")
def list_versions(
    _caller: Viewer,
    control: Control,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Versions older than this id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> list[ConfigVersionOut]:
    """Versions, newest first."""
    return [_version_out(v) for v in control.configs.list_versions(limit=limit, before_id=before)]


@configs_router.get("/{version_id}", summary="One edge config version")
def get_version(version_id: VersionId, _caller: Viewer, control: Control) -> ConfigVersionOut:
    """A version with its text."""
    row = control.configs.get_version(version_id)
    if row is None:
        raise ApiError(
            404, "unknown_config", f"expected an existing config version, got {version_id}"
        )
    return _version_out(row)


@configs_router.post("/{version_id}/assign", summary="Assign a config version to edges")
def assign(
    version_id: VersionId, body: AssignRequest, caller: Operator, control: Control
) -> list[AssignmentOut]:
    """Make the version the desired config of each edge; the control plane publishes it."""
    edges = [(edge.site, edge.agent_id) for edge in body.edges]
    try:
        rows = control.configs.assign(version_id, edges, assigned_by=caller.name)
    except LookupError as err:
        raise ApiError(
            404, "unknown_config", f"expected an existing config version: {err}"
        ) from err
    if control.reconciler is not None:
        control.reconciler.wake()
    return [_assignment_out(row) for row in rows]


@edges_router.get("", summary="List edges")
def list_edges(_caller: Viewer, session: DbSession, control: Control) -> list[EdgeOut]:
    """Every edge that reported or has a config assigned, by site and agent id."""
    edges = {(e.site, e.agent_id): e for e in session.scalars(select(Edge))}
    desired = {(a.site, a.agent_id): a for a in session.scalars(select(EdgeConfigAssignment))}
    keys = sorted(edges.keys() | desired.keys())
    return [_edge_out(key, edges.get(key), desired.get(key), control) for key in keys]


@edges_router.get("/{site}/{agent_id}", summary="One edge")
def get_edge(
    site: SegmentPath, agent_id: SegmentPath, _caller: Viewer, session: DbSession, control: Control
) -> EdgeOut:
    """An edge's last status, heartbeat counters, desired config and its ack."""
    edge = session.scalars(
        select(Edge).where(Edge.site == site, Edge.agent_id == agent_id)
    ).one_or_none()
    desired = session.scalars(
        select(EdgeConfigAssignment).where(
            EdgeConfigAssignment.site == site, EdgeConfigAssignment.agent_id == agent_id
        )
    ).one_or_none()
    if edge is None and desired is None:
        raise ApiError(404, "unknown_edge", f"expected a known edge, got {site}/{agent_id}")
    return _edge_out((site, agent_id), edge, desired, control)


def _version_out(row: EdgeConfigVersion) -> ConfigVersionOut:
    return ConfigVersionOut(
        id=row.id,
        config_hash=row.config_hash,
        text=row.config_text,
        comment=row.comment,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _assignment_out(row: EdgeConfigAssignment) -> AssignmentOut:
    return AssignmentOut(
        site=row.site,
        agent_id=row.agent_id,
        config_version_id=row.config_version_id,
        desired_hash=row.desired_hash,
        ack_status=row.ack_status,  # checked by the table
        acked_hash=row.acked_hash,
        error=row.error,
        assigned_at=row.assigned_at,
        assigned_by=row.assigned_by,
        acked_at=row.acked_at,
        last_sent_at=row.last_sent_at,
        sent_count=row.sent_count,
    )


def _edge_out(
    key: tuple[str, str],
    edge: Edge | None,
    desired: EdgeConfigAssignment | None,
    control: ControlState,
) -> EdgeOut:
    applied = edge.applied_config_hash if edge else None
    fresh = edge is not None and utcnow() - edge.last_seen <= timedelta(
        seconds=control.offline_after_s
    )
    return EdgeOut(
        site=key[0],
        agent_id=key[1],
        online=bool(edge and edge.state == "online" and fresh),
        state=edge.state if edge else "unknown",  # checked by the table
        agent_version=edge.agent_version if edge else None,
        applied_config_hash=applied,
        counters=dict(edge.counters) if edge else {},
        status_at=edge.status_at if edge else None,
        last_seen=edge.last_seen if edge else None,
        desired=_assignment_out(desired) if desired else None,
        in_sync=None if desired is None else applied == desired.desired_hash,
    )
